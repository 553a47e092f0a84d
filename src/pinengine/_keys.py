"""The public key inside whatever file holds one: a certificate, a public or
private key, a certificate signing request.

A pin is the hash of a SubjectPublicKeyInfo (SPKI). Operators need the pin of
a *backup* key before any certificate for it exists, so ``pinengine pins`` and
``Pin.from_file`` read every format people keep keys in (issue 15):

- certificates (the SPKI inside);
- public keys: ``PUBLIC KEY`` (an SPKI), ``RSA PUBLIC KEY`` (PKCS#1);
- certificate signing requests (PKCS#10), which carry the SPKI as is;
- private keys: PKCS#8 ``PRIVATE KEY``, PKCS#1 ``RSA PRIVATE KEY``, SEC1
  ``EC PRIVATE KEY``. The public key is taken from the key's own structure
  where it carries one (RSA's modulus and exponent; the optional public key
  of SEC1 and of PKCS#8 v2). Where it does not (Ed25519 and X25519 PKCS#8 v1,
  an EC key saved without its public point) and for ``ENCRYPTED PRIVATE KEY``,
  the ``cryptography`` package derives it, or the error names the extra.

Nothing derived from private material other than the public key leaves this
module, and no error message quotes input bytes. The DER reader below walks
only the few outer levels these formats have, with definite lengths: time
linear in the input.
"""

from __future__ import annotations

from typing import NamedTuple

from ._errors import CertificateParseError
from ._pem import read_blocks

_SEQUENCE, _INTEGER, _BIT_STRING, _OCTET_STRING, _OID = 0x30, 0x02, 0x03, 0x04, 0x06

_RSA_OIDS = (
    bytes.fromhex("2a864886f70d010101"),  # rsaEncryption
    bytes.fromhex("2a864886f70d01010a"),  # id-RSASSA-PSS
)
_EC_PUBLIC_KEY_OID = bytes.fromhex("2a8648ce3d0201")
#: rsaEncryption's AlgorithmIdentifier, with the NULL parameters RFC 3279 asks for.
_RSA_ALGORITHM = bytes.fromhex("300d06092a864886f70d0101010500")

CERTIFICATE = "certificate"
PUBLIC_KEY = "public key"
RSA_PUBLIC_KEY = "RSA public key (PKCS#1)"
CSR = "certificate request (PKCS#10)"
PKCS8 = "private key (PKCS#8)"
RSA_PRIVATE_KEY = "RSA private key (PKCS#1)"
EC_PRIVATE_KEY = "EC private key (SEC1)"
ENCRYPTED_PRIVATE_KEY = "encrypted private key (PKCS#8)"

_LABELS = {
    "CERTIFICATE": CERTIFICATE,
    "PUBLIC KEY": PUBLIC_KEY,
    "RSA PUBLIC KEY": RSA_PUBLIC_KEY,
    "CERTIFICATE REQUEST": CSR,
    "NEW CERTIFICATE REQUEST": CSR,
    "PRIVATE KEY": PKCS8,
    "RSA PRIVATE KEY": RSA_PRIVATE_KEY,
    "EC PRIVATE KEY": EC_PRIVATE_KEY,
    "ENCRYPTED PRIVATE KEY": ENCRYPTED_PRIVATE_KEY,
}


class PublicKey(NamedTuple):
    """One key found in a file: what held it, its SPKI, and the certificate if it was one."""

    kind: str
    spki: bytes
    certificate: bytes | None = None


class _Tlv(NamedTuple):
    tag: int
    start: int  # the first byte of the tag
    body: int  # the first byte of the value
    end: int  # one past the value


def _tlv(data: bytes, pos: int, end: int, what: str) -> _Tlv:
    if end - pos < 2:
        raise CertificateParseError(f"{what}: truncated DER")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise CertificateParseError(f"{what}: unexpected high-number DER tag")
    body = pos + 2
    if first < 0x80:
        length = first
    elif 0x81 <= first <= 0x84:
        n = first & 0x7F
        if end - body < n:
            raise CertificateParseError(f"{what}: truncated DER length")
        length = int.from_bytes(data[body : body + n], "big")
        if length < 0x80 or data[body] == 0:
            raise CertificateParseError(f"{what}: DER length not in its shortest form")
        body += n
    else:
        raise CertificateParseError(f"{what}: indefinite or oversized DER length")
    if end - body < length:
        raise CertificateParseError(f"{what}: DER value longer than its container")
    return _Tlv(tag, pos, body, body + length)


def _children(data: bytes, outer: _Tlv, what: str) -> list[_Tlv]:
    out: list[_Tlv] = []
    pos = outer.body
    while pos < outer.end:
        child = _tlv(data, pos, outer.end, what)
        out.append(child)
        pos = child.end
    return out


def _top(data: bytes, what: str) -> tuple[_Tlv, list[_Tlv]]:
    top = _tlv(data, 0, len(data), what)
    if top.tag != _SEQUENCE or top.end != len(data):
        raise CertificateParseError(f"{what}: not a single DER SEQUENCE")
    return top, _children(data, top, what)


def _raw(data: bytes, t: _Tlv) -> bytes:
    return data[t.start : t.end]


def _der(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    size = (n.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + n.to_bytes(size, "big") + value


def _spki(algorithm: bytes, key_bits: bytes) -> bytes:
    """An SPKI of an encoded AlgorithmIdentifier and the key's BIT STRING contents."""
    return _der(_SEQUENCE, algorithm + _der(_BIT_STRING, key_bits))


def _rsa_spki(data: bytes, fields: list[_Tlv], algorithm: bytes, what: str) -> bytes:
    # RSAPrivateKey starts version, modulus, publicExponent; RSAPublicKey is
    # modulus, publicExponent: the public key is those two INTEGERs as given.
    if len(fields) < 2 or fields[0].tag != _INTEGER or fields[1].tag != _INTEGER:
        raise CertificateParseError(f"{what}: no RSA modulus and exponent")
    key = _der(_SEQUENCE, _raw(data, fields[0]) + _raw(data, fields[1]))
    return _spki(algorithm, b"\x00" + key)


def _with_cryptography(der: bytes, password: bytes | None, what: str) -> bytes:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise CertificateParseError(
            f"{what}: the public key is not stored in this key (or the key is encrypted); reading it "
            "needs the cryptography package (pip install 'pinengine[cryptography]'), or export it with "
            "'openssl pkey -in KEY -pubout'"
        ) from None
    try:
        key = serialization.load_der_private_key(der, password=password)
    except TypeError:
        if password is None:
            raise CertificateParseError(f"{what}: the key is encrypted: give its passphrase "
                                        "(pinengine pins --passphrase-file FILE)") from None
        raise CertificateParseError(f"{what}: the key is not encrypted, but a passphrase was given") from None
    except Exception:  # cryptography's errors may describe the key: say only what failed
        raise CertificateParseError(
            f"{what}: cannot read the private key (wrong passphrase, or a malformed or unsupported key)"
        ) from None
    spki: bytes = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki


def _ec_private_spki(data: bytes, fields: list[_Tlv], curve: bytes | None, what: str) -> bytes | None:
    """The SPKI of an ECPrivateKey (RFC 5915), or None when it carries no public key."""
    if len(fields) < 2 or fields[0].tag != _INTEGER or fields[1].tag != _OCTET_STRING:
        raise CertificateParseError(f"{what}: not an ECPrivateKey")
    public: bytes | None = None
    for field in fields[2:]:
        if field.tag == 0xA0 and curve is None:  # [0] parameters: the named curve
            inner = _children(data, field, what)
            if len(inner) != 1 or inner[0].tag != _OID:
                raise CertificateParseError(f"{what}: EC parameters are not a named curve")
            curve = _raw(data, inner[0])
        elif field.tag == 0xA1:  # [1] publicKey BIT STRING
            inner = _children(data, field, what)
            if len(inner) != 1 or inner[0].tag != _BIT_STRING:
                raise CertificateParseError(f"{what}: EC public key is not a BIT STRING")
            public = data[inner[0].body : inner[0].end]
    if public is None:
        return None
    if curve is None:
        raise CertificateParseError(f"{what}: EC key names no curve")
    return _spki(_der(_SEQUENCE, bytes.fromhex("06072a8648ce3d0201") + curve), public)


def _pkcs8_spki(data: bytes, fields: list[_Tlv], password: bytes | None, what: str) -> bytes:
    # OneAsymmetricKey (RFC 5958): version, privateKeyAlgorithm,
    # privateKey OCTET STRING, [0] attributes, [1] publicKey (v2).
    algorithm = fields[1]
    alg_fields = _children(data, algorithm, what)
    if not alg_fields or alg_fields[0].tag != _OID:
        raise CertificateParseError(f"{what}: the key's algorithm is not an OID")
    oid = data[alg_fields[0].body : alg_fields[0].end]
    for field in fields[3:]:
        if field.tag == 0x81:  # [1] IMPLICIT BIT STRING: the public key, as stored
            return _spki(_raw(data, algorithm), data[field.body : field.end])
    private = _tlv(data, fields[2].body, fields[2].end, what)
    if oid in _RSA_OIDS:
        if private.tag != _SEQUENCE:
            raise CertificateParseError(f"{what}: the RSA key is not an RSAPrivateKey")
        return _rsa_spki(data, _children(data, private, what)[1:], _raw(data, algorithm), what)
    if oid == _EC_PUBLIC_KEY_OID:
        if private.tag != _SEQUENCE or len(alg_fields) != 2 or alg_fields[1].tag != _OID:
            raise CertificateParseError(f"{what}: an EC key needs a named curve and an ECPrivateKey")
        found = _ec_private_spki(data, _children(data, private, what), _raw(data, alg_fields[1]), what)
        if found is not None:
            return found
    return _with_cryptography(data, password, what)


def _classify(data: bytes, what: str, password: bytes | None) -> PublicKey:
    """The key in one DER object of unknown kind, told by its shape."""
    _, fields = _top(data, what)
    tags = [f.tag for f in fields]
    if tags == [_SEQUENCE, _BIT_STRING]:
        return PublicKey(PUBLIC_KEY, data)
    if tags == [_SEQUENCE, _OCTET_STRING]:
        return PublicKey(ENCRYPTED_PRIVATE_KEY, _with_cryptography(data, password, what))
    if tags == [_SEQUENCE, _SEQUENCE, _BIT_STRING]:
        info = _children(data, fields[0], what)
        # CertificationRequestInfo: version, subject, subjectPKInfo, [0] attributes.
        if [f.tag for f in info] == [_INTEGER, _SEQUENCE, _SEQUENCE, 0xA0]:
            return PublicKey(CSR, _raw(data, info[2]))
        return PublicKey(CERTIFICATE, b"", data)
    if tags[:3] == [_INTEGER, _SEQUENCE, _OCTET_STRING]:
        return PublicKey(PKCS8, _pkcs8_spki(data, fields, password, what))
    if tags == [_INTEGER, _INTEGER]:
        return PublicKey(RSA_PUBLIC_KEY, _rsa_spki(data, fields, _RSA_ALGORITHM, what))
    if len(tags) >= 9 and all(t == _INTEGER for t in tags[:9]):
        return PublicKey(RSA_PRIVATE_KEY, _rsa_spki(data, fields[1:], _RSA_ALGORITHM, what))
    if tags[:2] == [_INTEGER, _OCTET_STRING]:
        spki = _ec_private_spki(data, fields, None, what)
        return PublicKey(EC_PRIVATE_KEY, spki if spki is not None else _with_cryptography(data, password, what))
    raise CertificateParseError(f"{what}: not a certificate, public key, private key or certificate request")


def public_keys(data: bytes | str, *, password: bytes | None = None) -> list[PublicKey]:
    """Every certificate, public key, private key and CSR in PEM or DER ``data``, in order.

    PEM blocks of other kinds (parameters, CRLs) are skipped; a file holding
    none of these kinds raises CertificateParseError. DER input is told apart
    by its shape. The SPKI of each key is checked for well-formed DER.
    ``password`` decrypts an ``ENCRYPTED PRIVATE KEY`` (needs ``cryptography``).
    Certificates are returned with an empty ``spki``: their own parser checks
    and reads them (see ``PublicKey.certificate``).
    """
    from ._backend import validate_spki

    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    is_pem = b"-----BEGIN " in raw
    found: list[PublicKey] = []
    for index, block in enumerate(read_blocks(raw)):
        what = f"object {index} ({block.label})" if is_pem else f"DER object {index}"
        kind = _LABELS.get(block.label)
        if kind is None:
            continue
        if not is_pem:
            key = _classify(block.der, what, password)  # no label: the shape says what it is
        elif kind == CERTIFICATE:
            key = PublicKey(CERTIFICATE, b"", block.der)
        elif kind == ENCRYPTED_PRIVATE_KEY:
            key = PublicKey(kind, _with_cryptography(block.der, password, what))
        else:
            key = _classify(block.der, what, password)
            if key.kind != kind:
                raise CertificateParseError(f"{what}: the PEM label says {kind}, the content is a {key.kind}")
        if key.certificate is None:
            validate_spki(key.spki)
        found.append(key)
    if not found:
        raise CertificateParseError("no certificate, public key, private key or certificate request found")
    return found
