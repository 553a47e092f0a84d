"""Live pin policies: pins that change while gateways and devices keep running.

A ``LivePolicy`` is a ``PinPolicy`` (it is accepted everywhere one is) that
holds the current immutable ``PinPolicy`` version and swaps it whole. Every
decision takes one reference to the version in force when it starts and uses
only that one, so a handshake never sees half of an update. A new version
comes from a file (``from_file``), a signed bundle (``from_bundle``, see
``pinengine.bundles``) or a key in Redis (``from_redis``), and is refused,
keeping the version in force, when it does not parse, fails validation, is
not newer (its ``serial``), or fails its signature: the refusal is logged,
counted and shown by ``status()`` and ``pinengine.stats()``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from . import bundles as _bundles
from ._errors import BundleError, PinengineError, PolicyError, PolicyUpdateError, StalePolicyError
from ._schema import MAX_POLICY_BYTES, decode_document, read_policy_bytes
from .policy import PinPolicy, VerificationResult

__all__ = ["LivePolicy", "PolicyUpdateError", "StalePolicyError", "live_policies", "recheck"]

log = logging.getLogger("pinengine")

PathLike = Union[str, "os.PathLike[str]"]

#: What ``on_update`` may be, besides a callable ``(old, new) -> None``.
ON_UPDATE_CHOICES = ("keep", "recheck")

_LIVE: weakref.WeakSet[LivePolicy] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def live_policies() -> list[LivePolicy]:
    """Every LivePolicy of this process that is still in use."""
    with _LIVE_LOCK:
        return list(_LIVE)


#: PinPolicy settings that, set on a LivePolicy, apply to every version (see LivePolicy.__setattr__).
_VERSION_SETTINGS = frozenset(
    ("hpkp", "hpkp_max_hosts", "hpkp_max_hosts_per_domain", "store_outage", "cache_ttl", "reporter")
)
#: What a version is made of: set on a LivePolicy, an AttributeError.
_VERSION_CONTENT = frozenset(("entries", "blocked_pins", "allow_sha1", "source"))


@dataclass(frozen=True)
class _Version:
    policy: PinPolicy
    serial: int
    #: SHA-256 of what the version was read from (the bytes, or a bundle's signed payload).
    digest: str
    raw_digest: str
    updated_at: float


def _check_serial(value: Any, where: str) -> int:
    if type(value) is not int or not 1 <= value <= _bundles.MAX_SERIAL:
        shown = f"a {type(value).__name__}" if type(value) is not int else (
            f"an integer of {value.bit_length()} bits" if abs(value) > _bundles.MAX_SERIAL else repr(value)
        )
        raise PolicyError(f"{where}: serial must be a whole number from 1 to 2**64-1, not {shown}")
    return value


def parse_policy_document(data: bytes, source: str) -> tuple[dict[str, Any], int | None]:
    """A policy file's bytes (TOML, or JSON when named .json or starting with ``{``) -> (mapping, serial).

    A live policy file may carry a top-level ``serial`` (a whole number): a
    version whose serial is not higher than the one in force is refused.
    """
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: {len(data)} bytes is larger than a policy may be ({MAX_POLICY_BYTES})")
    mapping = decode_document(data, source)
    if not isinstance(mapping, dict):
        raise PolicyError(f"{source}: a policy is a table/object, not {type(mapping).__name__}")
    serial = None
    if "serial" in mapping:
        mapping = dict(mapping)
        serial = _check_serial(mapping.pop("serial"), source)
    return mapping, serial


def _file_signature(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)


class _SerialFile:
    """The high-water mark of accepted bundle serials, kept in a small file: ``<serial> <payload sha256>``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> tuple[int, str | None]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(256)
        except FileNotFoundError:
            return 0, None
        except OSError as exc:
            raise BundleError(f"{self.path}: cannot read the last accepted bundle serial: {exc.strerror or exc}") \
                from None
        parts = raw.decode("ascii", "replace").split()
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 20 or len(parts[1]) != 64:
            raise BundleError(
                f"{self.path}: not a record of the last accepted bundle serial; refusing to guess "
                "(remove it only if you know no older bundle can be replayed)"
            )
        return _check_serial(int(parts[0]), self.path), parts[1]

    def write(self, serial: int, digest: str) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="ascii") as f:
                f.write(f"{serial} {digest}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise BundleError(f"{self.path}: cannot record the accepted bundle serial: {exc.strerror or exc}") \
                from None


class LivePolicy(PinPolicy):
    """A pin policy whose pins can change while it is in use; accepted wherever a PinPolicy is.

    Build one with ``from_file``, ``from_bundle`` or ``from_redis``, or from a
    ``PinPolicy`` and ``update()`` it by hand. ``current`` is the version in
    force; every ``verify`` (one per handshake) uses the version current at
    its start, so a decision always matches one complete version.

    ``policy_kwargs`` (``store``, ``reporter``, ``cache_ttl``, ``hpkp``...)
    are passed to every version built from a source, so dynamic-pin stores
    and reporters carry over; metrics are per host and entry and carry over
    by themselves. ``on_update``: ``"keep"`` (connections already made stay),
    ``"recheck"`` (idle pooled connections of what was given to ``watch()``
    are checked against the new version and closed when it refuses them), or
    a callable ``(old, new)`` run after each swap.
    """

    def __init__(
        self,
        policy: PinPolicy,
        *,
        serial: int = 0,
        name: str | None = None,
        on_update: str | Callable[[PinPolicy, PinPolicy], None] = "keep",
        **policy_kwargs: Any,
    ) -> None:
        # PinPolicy.__init__ is not called: every PinPolicy attribute and
        # method is answered by the version in force (see below).
        if isinstance(policy, LivePolicy):
            raise TypeError("a LivePolicy holds PinPolicy versions, not another LivePolicy")
        if not isinstance(policy, PinPolicy):
            raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
        if not callable(on_update) and on_update not in ON_UPDATE_CHOICES:
            raise ValueError(f"on_update must be one of {', '.join(ON_UPDATE_CHOICES)} or a callable, not {on_update!r}")
        self._on_update = on_update
        self._policy_kwargs = policy_kwargs
        self._settings: dict[str, Any] = {}
        self._label = name or policy.source
        self._kind = "code"
        self._origin = policy.source
        self._version = _Version(policy, serial, "", "", time.time())
        self._update_lock = threading.RLock()
        self._loader: Callable[[], tuple[bytes, str] | None] | None = None
        self._decode: Callable[[bytes, str], tuple[PinPolicy, int | None, str]] | None = None
        self._after_accept: Callable[[int, str], None] | None = None
        self._wake = threading.Event()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self.updates = 0
        self.failures = 0
        self.last_failure: str | None = None
        self.last_failure_at: float | None = None
        self.source_errors = 0
        self.last_source_error: str | None = None
        self._source_error_logged = 0.0
        self._refused_raw = ""
        with _LIVE_LOCK:
            _LIVE.add(self)

    # -- the version in force ---------------------------------------------

    @property
    def current(self) -> PinPolicy:
        """The PinPolicy version in force (immutable)."""
        return self._version.policy

    @property
    def serial(self) -> int:
        """The serial of the version in force (for files without one: a count of the versions loaded)."""
        return self._version.serial

    @property
    def updated_at(self) -> float:
        """When the version in force was applied (Unix time)."""
        return self._version.updated_at

    def verify(
        self,
        hostname: str,
        chain: Sequence[bytes],
        *,
        verified: bool = True,
        now: _dt.datetime | None = None,
        port: int | None = None,
        served_chain: Sequence[bytes] | None = None,
    ) -> VerificationResult:
        """``PinPolicy.verify`` with the version in force at the call (one version for the whole decision)."""
        return self._version.policy.verify(
            hostname, chain, verified=verified, now=now, port=port, served_chain=served_chain
        )

    def verify_batch(self, items: Iterable[tuple[str, Sequence[bytes]]], **kwargs: Any) -> list[Any]:
        """``PinPolicy.verify_batch`` with the version in force at the call."""
        return self._version.policy.verify_batch(items, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Attributes a PinPolicy sets in __init__ (entries, hpkp, reporter, ...)
        # come from the version in force.
        if name.startswith("__") or name in ("_version",):
            raise AttributeError(name)
        return getattr(self._version.policy, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # A setting of the PinPolicy kind set on the wrapper is a setting of
        # every version: the one in force now and each one put in force later
        # (_swap). What a version is made of comes with the version.
        if name in _VERSION_SETTINGS:
            with self._update_lock:
                self._settings[name] = value
                setattr(self._version.policy, name, value)
        elif name in _VERSION_CONTENT:
            raise AttributeError(
                f"{name!r} is part of the policy version in force; put a new version in force with update() "
                "or a new file or bundle"
            )
        else:
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<LivePolicy {self._label!r} ({self._kind}) serial={self.serial} entries={len(self.current.entries)}>"

    # -- construction from sources ------------------------------------------

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, source: str = "<mapping>", **kwargs: Any) -> LivePolicy:
        """A LivePolicy whose first version is built from ``mapping`` (the file schema)."""
        return cls(PinPolicy.from_mapping(mapping, source=source, **kwargs), **kwargs)

    @classmethod
    def from_file(
        cls,
        path: PathLike,
        *,
        interval: float | None = 1.0,
        sighup: bool = False,
        on_update: str | Callable[[PinPolicy, PinPolicy], None] = "keep",
        name: str | None = None,
        **policy_kwargs: Any,
    ) -> LivePolicy:
        """A policy read from a TOML/JSON file and read again when it changes.

        The file's inode, size and modification time are polled every
        ``interval`` seconds (None: only on ``reload()``/SIGHUP); ``sighup=True``
        also reloads on SIGHUP (call from the main thread). The first read must
        succeed (PolicyError otherwise); later broken versions keep the one in force.
        """
        filename = os.fspath(path)

        def decode(data: bytes, origin: str) -> tuple[PinPolicy, int | None, str]:
            mapping, serial = parse_policy_document(data, filename)
            return PinPolicy.from_mapping(mapping, source=filename, **policy_kwargs), serial, \
                hashlib.sha256(data).hexdigest()

        data = read_policy_bytes(filename)
        signature = _file_signature(filename)
        first, serial, digest = decode(data, filename)
        live = cls(first, serial=serial or 1, name=name or filename, on_update=on_update, **policy_kwargs)
        live._kind, live._origin, live._decode = "file", filename, decode
        live._version = _Version(first, serial or 1, digest, hashlib.sha256(data).hexdigest(), time.time())
        state: dict[str, Any] = {"signature": signature, "pending": None}

        def load(settle: bool = True) -> tuple[bytes, str] | None:
            now = _file_signature(filename)
            if now is None:
                raise PolicyError(f"{filename}: the policy file is gone")
            if now == state["signature"]:
                return None
            if settle and now != state["pending"]:
                # Read a changed file once it has stayed the same for one poll:
                # a file written in place (not renamed over) may be half
                # written, and half a policy can be a valid, smaller one.
                state["pending"] = now
                return None
            data = read_policy_bytes(filename)
            if _file_signature(filename) != now:
                return None  # changed while read: next time
            state["signature"] = now
            return data, filename

        def force() -> tuple[bytes, str] | None:
            state["signature"] = None
            return load(settle=False)

        live._loader = load
        live._force_loader = force
        live._start(interval, sighup)
        return live

    @classmethod
    def from_bundle(
        cls,
        path_or_bytes: PathLike | bytes,
        trusted_keys: Iterable[Any],
        *,
        serial_file: PathLike | None = None,
        interval: float | None = 1.0,
        sighup: bool = False,
        on_update: str | Callable[[PinPolicy, PinPolicy], None] = "keep",
        name: str | None = None,
        **policy_kwargs: Any,
    ) -> LivePolicy:
        """A policy from a signed bundle (``pinengine policy sign``), only if a trusted key signed it.

        A bundle is accepted when its serial is higher than the last one
        accepted, which is kept in ``serial_file`` (default: next to the bundle,
        ``<bundle>.serial``; bundles given as bytes without one keep it in
        memory only), and when its ``not_after`` has not passed. A bundle file
        is polled like ``from_file``; ``update_bundle(data)`` offers new bytes.
        """
        keys = _bundles.trusted_key_ids(trusted_keys)
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            filename = None
            data = bytes(path_or_bytes)
            origin = "<bundle>"
        else:
            filename = os.fspath(path_or_bytes)
            data = _bundles.read_bundle_file(filename)
            origin = filename
        if serial_file is None and filename is not None:
            serial_file = filename + ".serial"
        marks = _SerialFile(os.fspath(serial_file)) if serial_file is not None else None
        low, low_digest = marks.read() if marks is not None else (0, None)

        def decode(data: bytes, origin: str) -> tuple[PinPolicy, int | None, str]:
            current = getattr(live_ref, "value", None)
            floor, floor_digest = (current.serial, current._version.digest) if current else (low, low_digest)
            bundle = _bundles.read_bundle(data, keys, min_serial=floor, accept_digest=floor_digest, source=origin)
            policy = PinPolicy.from_mapping(bundle.policy, source=f"{origin} (serial {bundle.serial})", **policy_kwargs)
            return policy, bundle.serial, bundle.digest

        class _Ref:
            value: LivePolicy | None = None

        live_ref = _Ref()
        first, serial, digest = decode(data, origin)
        assert serial is not None
        if marks is not None and (serial, digest) != (low, low_digest):
            marks.write(serial, digest)
        live = cls(first, serial=serial, name=name or origin, on_update=on_update, **policy_kwargs)
        live_ref.value = live
        live._kind, live._origin, live._decode = "bundle", origin, decode
        live._version = _Version(first, serial, digest, hashlib.sha256(data).hexdigest(), time.time())
        if marks is not None:
            live._after_accept = marks.write
        if filename is not None:
            state = {"signature": _file_signature(filename)}
            fname = filename

            def load() -> tuple[bytes, str] | None:
                # A half-written bundle fails its signature and is refused;
                # the complete one is read at the next change.
                now = _file_signature(fname)
                if now is None:
                    raise BundleError(f"{fname}: the bundle file is gone")
                if now == state["signature"]:
                    return None
                data = _bundles.read_bundle_file(fname)
                state["signature"] = now
                return data, fname

            def force() -> tuple[bytes, str] | None:
                state["signature"] = None
                return load()

            live._loader = load
            live._force_loader = force
            live._start(interval, sighup)
        return live

    @classmethod
    def from_redis(
        cls,
        url_or_client: str | Any,
        key: str,
        *,
        trusted_keys: Iterable[Any] | None = None,
        fallback: PinPolicy | None = None,
        interval: float = 1.0,
        timeout: float = 1.0,
        on_update: str | Callable[[PinPolicy, PinPolicy], None] = "keep",
        name: str | None = None,
        **policy_kwargs: Any,
    ) -> LivePolicy:
        """A policy kept in a Redis key (``pinengine policy publish``), shared by a fleet.

        The key holds a policy document (JSON with a ``serial``) or, with
        ``trusted_keys``, a signed bundle (then nothing else is accepted).
        Publishing also sends the serial on the channel ``<key>:published``:
        subscribers read the key at once; the key is also polled every
        ``interval`` seconds, so a lost message or a reconnect is caught up.
        While Redis cannot be reached the last good version stays in force.
        If Redis cannot be read at the start, ``fallback`` is used (and
        replaced by the first version read), or the error is raised.
        """
        import redis

        client = redis.Redis.from_url(url_or_client, socket_timeout=timeout, socket_connect_timeout=timeout) \
            if isinstance(url_or_client, str) else url_or_client
        origin = f"redis:{key}"
        keys = _bundles.trusted_key_ids(trusted_keys) if trusted_keys is not None else None

        class _Ref:
            value: LivePolicy | None = None

        live_ref = _Ref()

        def decode(data: bytes, origin: str) -> tuple[PinPolicy, int | None, str]:
            if keys is not None:
                current = live_ref.value
                floor, floor_digest = (current.serial, current._version.digest) if current else (0, None)
                bundle = _bundles.read_bundle(data, keys, min_serial=floor, accept_digest=floor_digest, source=origin)
                policy = PinPolicy.from_mapping(bundle.policy, source=f"{origin} (serial {bundle.serial})",
                                                **policy_kwargs)
                return policy, bundle.serial, bundle.digest
            mapping, serial = parse_policy_document(data, origin + ".json")
            if serial is None:
                raise PolicyError(f"{origin}: a policy published to Redis needs a serial")
            return PinPolicy.from_mapping(mapping, source=f"{origin} (serial {serial})", **policy_kwargs), serial, \
                hashlib.sha256(data).hexdigest()

        def fetch() -> tuple[bytes, str] | None:
            try:
                value = client.get(key)
            except redis.RedisError as exc:
                raise _SourceUnavailable(f"{origin}: Redis cannot be read: {exc}") from None
            if value is None:
                raise _SourceUnavailable(f"{origin}: the key does not exist (nothing published yet)")
            if len(value) > MAX_POLICY_BYTES:
                raise PolicyError(f"{origin}: {len(value)} bytes is larger than a policy may be")
            return (value if isinstance(value, bytes) else str(value).encode("utf-8")), origin

        try:
            got = fetch()
            assert got is not None
            first, serial, digest = decode(*got)
            raw = hashlib.sha256(got[0]).hexdigest()
        except _SourceUnavailable:
            if fallback is None:
                raise
            first, serial, digest, raw = fallback, 0, "", ""
        live = cls(first, serial=serial or 0, name=name or origin, on_update=on_update, **policy_kwargs)
        live_ref.value = live
        live._kind, live._origin, live._decode = "redis", origin, decode
        live._version = _Version(first, serial or 0, digest, raw, time.time())
        live._loader = fetch
        live._force_loader = fetch
        live._start(interval, False)
        ref = weakref.ref(live)
        wake, channel = live._wake, f"{key}:published"

        def listen() -> None:
            while True:
                me = ref()
                if me is None or me._closed:
                    return
                del me
                try:
                    pubsub = client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(channel)
                    try:
                        wake.set()  # (re)subscribed: catch up on what may have been missed
                        while True:
                            me = ref()
                            if me is None or me._closed:
                                return
                            del me
                            if pubsub.get_message(timeout=min(interval, 0.5)) is not None:
                                wake.set()
                    finally:
                        pubsub.close()
                except Exception:  # Redis is down: the poller notes it; try again shortly
                    time.sleep(min(interval, 0.5))

        thread = threading.Thread(target=listen, name=f"pinengine-live {origin} pubsub", daemon=True)
        thread.start()
        live._threads.append(thread)
        return live

    # -- updates ---------------------------------------------------------------

    _force_loader: Callable[[], tuple[bytes, str] | None] | None = None
    _force_flag: threading.Event | None = None

    def update(self, policy: PinPolicy, *, serial: int | None = None) -> None:
        """Put ``policy`` in force (by hand); with ``serial``, only if higher than the serial in force."""
        if isinstance(policy, LivePolicy) or not isinstance(policy, PinPolicy):
            raise TypeError(f"policy must be a PinPolicy version, not {type(policy).__name__}")
        with self._update_lock:
            try:
                if serial is not None:
                    _check_serial(serial, self._label)
                    if serial <= self._version.serial:
                        raise StalePolicyError(
                            f"{self._label}: serial {serial} is not newer than serial {self._version.serial} in force"
                        )
                self._swap(policy, serial if serial is not None else self._version.serial + 1, "", "")
            except PinengineError as exc:
                self._refused(exc)
                raise

    def update_bundle(self, data: bytes) -> bool:
        """Offer the bytes of a new bundle (or policy document) to this policy; see ``reload``."""
        return self._offer(bytes(data), self._origin, raise_errors=True)

    def reload(self) -> bool:
        """Read the source again now. True if a new version was put in force, False if unchanged.

        A version that is refused raises the reason (a PolicyError subclass:
        PolicyError, StalePolicyError, a BundleError...); the version in force stays.
        """
        loader = self._force_loader
        if loader is None:
            return False
        try:
            got = loader()
        except _SourceUnavailable as exc:
            self._source_error(exc)
            raise PolicyUpdateError(str(exc)) from None
        except PinengineError as exc:
            self._refused(exc)
            raise
        if got is None:
            return False
        return self._offer(got[0], got[1], raise_errors=True)

    def _poll(self) -> None:
        loader = self._loader
        if loader is None:
            return
        try:
            got = loader()
        except _SourceUnavailable as exc:
            self._source_error(exc)
            return
        except PinengineError as exc:
            self._refused(exc)
            return
        if got is not None:
            self._offer(got[0], got[1], raise_errors=False)

    def _offer(self, data: bytes, origin: str, *, raise_errors: bool) -> bool:
        raw = hashlib.sha256(data).hexdigest()
        with self._update_lock:
            if raw == self._version.raw_digest:
                return False
            if raw == self._refused_raw and not raise_errors:
                return False  # refused already: polling it again says nothing new
            decode = self._decode
            try:
                if decode is None:
                    raise PolicyUpdateError(f"{self._label}: this live policy has no source to read versions from")
                policy, serial, digest = decode(data, origin)
                current = self._version
                if digest == current.digest:
                    return False  # the same version again (rewritten, or re-published)
                if serial is None:
                    serial = current.serial + 1
                elif serial <= current.serial:
                    raise StalePolicyError(
                        f"{origin}: serial {serial} is not newer than serial {current.serial} in force"
                    )
                if self._after_accept is not None:
                    self._after_accept(serial, digest)
                self._swap(policy, serial, digest, raw)
            except Exception as exc:
                self._refused_raw = raw
                self._refused(exc)
                if raise_errors:
                    raise
                return False
        return True

    def _swap(self, policy: PinPolicy, serial: int, digest: str, raw: str) -> None:
        old = self._version.policy
        if policy._store is None and old._store is not None:  # the dynamic pins carry over
            policy._store = old._store
        for name, value in self._settings.items():  # set on the wrapper: for every version
            setattr(policy, name, value)
        self._version = _Version(policy, serial, digest, raw, time.time())
        self.updates += 1
        self.last_source_error = None
        log.info("live policy %s: serial %d in force (%d entries)", self._label, serial, len(policy.entries))
        self._after_swap(old, policy)

    def _after_swap(self, old: PinPolicy, new: PinPolicy) -> None:
        try:
            if callable(self._on_update):
                self._on_update(old, new)
            elif self._on_update == "recheck":
                for target in list(self._watched):
                    recheck(target, new)
        except Exception:
            log.exception("live policy %s: on_update failed", self._label)

    def _refused(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_failure = f"{type(exc).__name__}: {exc}"
        self.last_failure_at = time.time()
        log.error("live policy %s: new version refused, serial %d stays in force: %s",
                  self._label, self._version.serial, self.last_failure)
    def _source_error(self, exc: BaseException) -> None:
        self.source_errors += 1
        self.last_source_error = str(exc)
        at = time.monotonic()
        if at >= self._source_error_logged:
            self._source_error_logged = at + 10.0
            log.warning("live policy %s: %s; serial %d stays in force", self._label, exc, self._version.serial)

    # -- watching ------------------------------------------------------------

    def _start(self, interval: float | None, sighup: bool) -> None:
        if sighup:
            wake = self._wake
            force = threading.Event()
            self._force_flag = force
            previous = signal.getsignal(signal.SIGHUP)

            def on_sighup(signum: int, frame: Any) -> None:
                force.set()
                wake.set()
                if callable(previous):
                    previous(signum, frame)

            signal.signal(signal.SIGHUP, on_sighup)
        if interval is None and not sighup:
            return
        if interval is not None and interval <= 0:
            raise ValueError(f"interval must be above 0 seconds, not {interval!r}")
        ref = weakref.ref(self)
        wake = self._wake
        period = interval

        def watch() -> None:
            while True:
                wake.wait(period)
                wake.clear()
                me = ref()
                if me is None or me._closed:
                    return
                try:
                    flag = me._force_flag
                    if flag is not None and flag.is_set():
                        flag.clear()
                        try:
                            me.reload()
                        except PinengineError:
                            pass  # recorded by reload
                    else:
                        me._poll()
                except Exception:  # never let the watcher die
                    log.exception("live policy %s: watcher failed", me._label)
                del me

        thread = threading.Thread(target=watch, name=f"pinengine-live {self._label}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def watch(self, target: Any) -> Any:
        """With ``on_update="recheck"``: after each swap, check ``target``'s idle pooled connections.

        ``target`` is a requests Session, a PinnedAdapter or a urllib3
        PoolManager; it is held weakly. Returns ``target``. Anything else
        (an httpx or aiohttp client) raises TypeError: its pool cannot be
        rechecked from here, and watching it would do nothing; close its
        connections in an ``on_update`` callable instead.
        """
        if not _watchable(target):
            raise TypeError(
                f"watch() takes a requests Session, a requests adapter or a urllib3 PoolManager, not "
                f"{type(target).__module__}.{type(target).__name__}: its pooled connections cannot be rechecked; "
                "close them in an on_update callable instead"
            )
        self._watched.add(target)
        return target

    def close(self) -> None:
        """Stop watching the source (the version in force stays usable)."""
        self._closed = True
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)

    # -- operability -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Source, serial, last update and last failure, as plain data (in ``pinengine.stats()``)."""
        version = self._version
        return {
            "name": self._label,
            "source": self._kind,
            "origin": self._origin,
            "serial": version.serial,
            "entries": len(version.policy.entries),
            "updated_at": version.updated_at,
            "updates": self.updates,
            "failures": self.failures,
            "last_failure": self.last_failure,
            "last_failure_at": self.last_failure_at,
            "source_errors": self.source_errors,
            "last_source_error": self.last_source_error,
        }


class _SourceUnavailable(PolicyUpdateError):
    """The source cannot be read right now (Redis down, key missing): not a bad version."""


def _watchable(target: Any) -> bool:
    """Whether ``_pools`` can find ``target``'s connection pools (the shapes it reads)."""
    return (
        isinstance(getattr(target, "adapters", None), Mapping)
        or hasattr(target, "poolmanager")
        or hasattr(getattr(target, "pools", None), "lock")
    )


def _pools(target: Any) -> list[Any]:
    """The urllib3 connection pools of a requests Session, a requests adapter or a urllib3 PoolManager."""
    managers = []
    adapters = getattr(target, "adapters", None)
    if isinstance(adapters, Mapping):
        for adapter in adapters.values():
            managers.append(getattr(adapter, "poolmanager", None))
            managers.extend(getattr(adapter, "proxy_manager", {}).values())
    elif hasattr(target, "poolmanager"):
        managers.append(target.poolmanager)
        managers.extend(getattr(target, "proxy_manager", {}).values())
    else:
        managers.append(target)
    pools = []
    for manager in managers:
        container = getattr(manager, "pools", None)
        if container is None:
            continue
        with container.lock:
            keys = list(container.keys())
        for key in keys:
            pool = container.get(key)
            if pool is not None:
                pools.append(pool)
    return pools


def recheck(target: Any, policy: PinPolicy) -> int:
    """Close the idle pooled TLS connections of ``target`` that ``policy`` refuses; returns how many."""
    import queue
    import ssl

    from .hooks.ssl import checked_chain

    closed = 0
    for pool in _pools(target):
        idle = getattr(pool, "pool", None)
        if idle is None:
            continue
        kept = []
        while True:
            try:
                conn = idle.get(block=False)
            except (queue.Empty, AttributeError):
                break
            sock = getattr(conn, "sock", None) if conn is not None else None
            # A TLS socket, or (through an HTTPS proxy) urllib3's SSLTransport around an SSLObject.
            tls = sock if isinstance(sock, ssl.SSLSocket) else getattr(sock, "sslobj", None)
            if isinstance(tls, (ssl.SSLSocket, ssl.SSLObject)) and tls.server_hostname:
                try:
                    # Judged as the hook judged it when it was made (the same reading of its chain),
                    # by the new version.
                    checked = checked_chain(tls, tls.context)
                    policy.verify(checked.hostname, checked.chain, verified=checked.validated)
                except Exception:
                    conn.close()
                    closed += 1
            kept.append(conn)
        for conn in reversed(kept):  # the pool is a LIFO queue: keep its order
            try:
                idle.put(conn, block=False)
            except Exception:  # no room any more: do not leak it
                if conn is not None:
                    conn.close()
    return closed


def _delegate_method(name: str) -> Callable[..., Any]:
    def method(self: LivePolicy, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._version.policy, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``PinPolicy.{name}`` of the version in force."
    return method


def _delegate_property(name: str) -> property:
    return property(lambda self: getattr(self._version.policy, name), doc=f"``PinPolicy.{name}`` of the version in force.")


# Every method and property a PinPolicy has (and LivePolicy does not define)
# answers from the version in force, so code written for a PinPolicy (the
# hooks, hpkp, reporting) works unchanged and never mixes two versions within
# one call.
for _klass in PinPolicy.__mro__[:-1]:
    for _name, _value in list(vars(_klass).items()):
        if _name.startswith("__") or _name in LivePolicy.__dict__ or isinstance(_value, (classmethod, staticmethod)):
            continue
        if isinstance(_value, property):
            setattr(LivePolicy, _name, _delegate_property(_name))
        elif callable(_value):
            setattr(LivePolicy, _name, _delegate_method(_name))
del _klass, _name, _value
