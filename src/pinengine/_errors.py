"""Every exception class of pinengine, all under ``PinengineError``.

Catch ``PinengineError`` for anything pinengine refuses on its own account;
``PinMismatchError`` is also an ``ssl.SSLCertVerificationError``, so code that
already handles certificate failures handles a pin failure too. (The gRPC
hook's errors are grpc's own types and live in ``pinengine.hooks.grpc``.)
The modules that raise these re-export them under their old names.
"""

from __future__ import annotations

import ssl


class PinengineError(Exception):
    """Base class of the errors pinengine raises on its own account."""


class CertificateParseError(PinengineError, ValueError):
    """A certificate (or public key) is not well-formed DER of the expected shape."""


class PinFormatError(PinengineError, ValueError):
    """A pin string or pin value is malformed: the message quotes it and says why."""


class PolicyError(PinengineError, ValueError):
    """A pin policy (file, mapping or code) is invalid: the message names the place and the problem."""


class HostnameError(PinengineError, ValueError):
    """A host name cannot be used: malformed, or spelled so that clients read it in different ways.

    The message quotes the name and, when readings differ (an IPv4 literal
    OpenSSL and the socket read as two addresses, a non-ASCII name that
    clients encode to names pinned differently), names each reading.
    """


class StoreError(PinengineError):
    """A pin store cannot be used: corrupt data, an unreachable server, a bad import document.

    The message names the file or key and says what is wrong. Corrupt data is
    never overwritten or deleted by a store: it stays for inspection.
    """


class NoRecordError(PinengineError, LookupError):
    """``add_pins`` was asked to extend the record of a host that has no live record."""


class HPKPError(PinengineError, ValueError):
    """A Public-Key-Pins header is malformed: the message quotes the header and names the problem.

    RFC 7469 says a malformed header is ignored as a whole; ``note_response``
    does that (and logs this message).
    """


class InsecurePinWarning(UserWarning):
    """A SHA-1 pin was accepted because the caller explicitly allowed it."""


class PinMismatchError(PinengineError, ssl.SSLCertVerificationError):
    """No configured pin matched the certificate chain, or the chain holds a blocked key.

    The message lists every certificate of the chain with its pin and subject,
    then the pins configured for the host, so the right pin can be pasted from it.
    """

    def __init__(self, message: str, *, hostname: str = "", result: object = None) -> None:
        super().__init__(message)
        self.hostname = hostname
        self.result = result
        # ssl.SSLCertVerificationError carries these two; give them meaning here.
        self.verify_code = 0
        self.verify_message = message

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PolicyUpdateError(PolicyError):
    """A new version of a live policy was refused; the policy in force stays as it was."""


class StalePolicyError(PolicyUpdateError):
    """A new policy version (or bundle) is not newer than the one in force: its serial is not higher."""


class BundleError(PolicyUpdateError):
    """A signed policy bundle was refused; the subclasses say why."""


class BundleFormatError(BundleError):
    """The data is not a pinengine policy bundle (or is larger than ``bundles.MAX_BUNDLE_BYTES``)."""


class UntrustedKeyError(BundleError):
    """The bundle is signed by a key that is not among the trusted keys."""


class BundleSignatureError(BundleError):
    """The bundle's signature does not verify with the trusted key it names: it was altered after signing."""


class StaleBundleError(BundleError, StalePolicyError):
    """The bundle's serial is not higher than the last one accepted (a rollback or a replay)."""


class ExpiredBundleError(BundleError):
    """The bundle's ``not_after`` time has passed."""


def der_input_error(data: object, error: Exception) -> Exception:
    """The error to raise when ``data`` is not a DER certificate: PEM text (bytes or str) is told how to read it.

    The cores call this on their error path only (a well-formed certificate
    never gets here), so the public ``spki_sha256`` & co. are the cores' own
    functions, with no wrapper per call.
    """
    head = data[:64] if isinstance(data, (bytes, bytearray, memoryview, str)) else b""
    text = bytes(head) if not isinstance(head, str) else head.encode("utf-8", "replace")
    if b"-----BEGIN" in text:
        return CertificateParseError(
            "this is PEM text, not DER: read it with pinengine.load_certificates(data), which returns "
            "the DER certificates it holds"
        )
    return error


#: How much of a value someone else wrote an error message quotes.
QUOTED_LENGTH = 100


def quoted(value: object) -> str:
    """``value`` as an error message quotes it: its repr (no line breaks), cut after ``QUOTED_LENGTH``
    characters, so that a huge value makes a short message (and log line), not one as large as itself."""
    if isinstance(value, str):
        if len(value) <= QUOTED_LENGTH:
            return repr(value)
        return f"{value[:QUOTED_LENGTH]!r}... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"  # (repr of a huge int is refused, or slow)
    text = repr(value)
    return text if len(text) <= QUOTED_LENGTH else f"{text[:QUOTED_LENGTH]}... (a {type(value).__name__})"


def named(value: str) -> str:
    """A name (a host, a record's key) as a message shows it: as it is when it is short and printable,
    else ``quoted``."""
    return value if len(value) <= QUOTED_LENGTH and value.isprintable() else quoted(value)
