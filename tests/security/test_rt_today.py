"""Red team (rt4) on what changed today: resumed sessions, live policy settings, bounds, escapes.

Findings were written as ``xfail(strict=True)`` tests that failed on the
code of the time; each was fixed, and its test now holds the library to it.
The other tests are attacks that did not get through, each able to fail if
the defence it checks goes away.

Findings (all fixed):

- ``hooks/ssl.checked_chain`` recalls the chain of a resumed session by
  ``(leaf, host name, validated)``, where ``validated`` is read from the
  context *now*, not from the full handshake that made the session. A
  client whose context changes ``verify_mode`` / ``check_hostname`` between
  connections resumes a session whose remembered chain is then never
  found: it is judged on its leaf alone, and a key blocked since in the
  chain the full handshake saw passes, while a full handshake in either
  setting refuses it.
- Error messages still carry whole hostile values, line breaks included
  (docs/security.md: "Error messages quote a value someone else wrote cut
  after 100 characters"). A pin-store record's host name goes verbatim into
  every StoreError about that record (``stores/_base.py``
  ``PinRecord.from_dict``: ``where = f"{where} ({host})"``; an SQLite row's
  host column likewise, ``stores/sqlite.py`` ``_record``), so a shared or
  corrupt store file adds its own lines (and megabytes) to logs; an unknown
  record field and an unknown record source are quoted whole too. In a
  policy, ``mode``, ``expires``, a pin's ``position`` and ``report_uri`` are
  quoted whole (a 1 MB value makes a 1 MB PolicyError).
- A store record whose time is a JSON integer too large for a float
  (``"first_seen": 1000...0``, 400 digits) raises OverflowError out of
  ``JSONFileStore`` (and so out of ``PinPolicy.verify`` for a dynamic
  entry), not the StoreError a store promises for a file it cannot read
  (``stores/_base.py`` ``_number``: ``math.isfinite`` of a huge int).
- An unsigned bundle (read before its signature is checked: bytes a device
  fetched) writes its own text into the BundleError: the names of unknown
  outer keys are joined whole (``bundles.py`` ``read_bundle``: ``found
  {', '.join(sorted(map(str, outer)))}``), 1 MB and line breaks included, and
  a ``key_id`` (up to 128 characters) goes verbatim, line breaks included,
  into UntrustedKeyError.
- A server's ``Public-Key-Pins`` header has its values quoted whole in the
  HPKPError that noting logs for every response: a pin-sha256, max-age or
  includeSubDomains value of 8,000 characters makes an 8.4 KB message
  (``hpkp/_header.py`` ``_parse_pin`` / ``_parse_max_age`` / ``parse_header``,
  ``{value!r}``); the header itself is cut at 300 characters.
- A certificate name is formatted in quadratic time: ``_types._decode_oid``
  shifts one growing integer per byte of an OID (``value << 7``), so a
  subject holding one 128 KB OID takes ~2.4 s to format on either core
  (``parse_certificate(der).subject``, every PinMismatchError message, the
  output of ``pinengine verify`` on a chain file of up to 16 MiB: minutes),
  and the name then comes out as its whole hex (256 KB) in the message.
- ``LivePolicy(on_update="recheck")`` does not recheck pooled connections
  made through an HTTPS proxy (``live_policy.recheck`` looks only at
  ``ssl.SSLSocket``; urllib3 tunnels TLS in TLS with an ``SSLTransport``
  over a PinnedSSLObject): after a new version blocks a key of the target's
  chain, the idle connection stays in the pool and the next request is sent
  on it, while through a plain HTTP proxy the same connection is closed and
  the new handshake refused.
- ``LivePolicy.watch`` takes any object and silently does nothing for one
  it cannot recheck: an ``httpx.Client`` pinned with a pinned context (the
  way the docs pin httpx) keeps its pooled connection after a new version
  blocks a key of its chain, and the next request is sent on it
  (``live_policy._pools`` finds no pools; no error, no warning).
"""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from pinengine import Pin, PinMismatchError
from pinengine.hooks.ssl import PinnedSSLContext, create_pinned_context
from tests.certs import Chain, key_pem, make_cert, make_chain, new_key, pem
from tests.proxy import ConnectProxy
from tests.tls import TLSServer

LOCAL = "localhost"
OTHER_PIN = "sha256/" + "A" * 43 + "="
THIRD_PIN = "sha256/" + "B" * 42 + "A="


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def local_chain() -> Chain:
    return make_chain("p256", LOCAL)


@pytest.fixture
def local_server(local_chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(local_chain) as srv:
        yield srv


# -- resumed sessions after the context's validation settings change ------------------------

MODES = {
    "validated": (ssl.CERT_REQUIRED, True),
    "CERT_NONE": (ssl.CERT_NONE, False),
    "no-host-check": (ssl.CERT_REQUIRED, False),
}


def set_mode(context: ssl.SSLContext, mode: str) -> None:
    verify_mode, check_hostname = MODES[mode]
    context.check_hostname = False
    context.verify_mode = verify_mode
    context.check_hostname = check_hostname


def write_live(path: Path, pins: list[str], blocked: list[str]) -> None:
    path.write_text(json.dumps({"blocked_pins": blocked, "domains": [{"host": LOCAL, "pins": pins}]}))


def full_handshake(context: ssl.SSLContext, server: TLSServer) -> ssl.SSLSession:
    """One request on a full handshake; the session it leaves (TLS 1.3 tickets come with the answer)."""
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                             server_hostname=LOCAL) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        while conn.recv(65536):
            pass
        session = conn.session
    assert session is not None
    return session


def resume(context: ssl.SSLContext, server: TLSServer, session: ssl.SSLSession) -> bool:
    """Resume ``session``; whether it was resumed (or raise what refused it)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        conn = context.wrap_socket(sock, server_hostname=LOCAL, session=session)
    finally:
        sock.close()
    reused = bool(conn.session_reused)
    conn.close()
    return reused


def mode_switch(chain: Chain, server: TLSServer, tmp_path: Path, first: str, then: str, *, block: bool = True,
                fresh: bool = False) -> bool:
    """A full handshake in mode ``first``; the intermediate's key blocked by a new live version; the context
    switched to mode ``then``; the session resumed (or, with ``fresh``, a new full handshake)."""
    from pinengine.live_policy import LivePolicy

    path = tmp_path / "policy.json"
    pins = [pin(chain.ders[0]), OTHER_PIN]
    write_live(path, pins, [])
    live = LivePolicy.from_file(path, interval=None)
    try:
        context = create_pinned_context(live, cafile=server.cafile)
        set_mode(context, first)
        session = full_handshake(context, server)
        write_live(path, pins, [pin(chain.ders[1])] if block else [THIRD_PIN])
        assert live.reload()
        set_mode(context, then)
        if fresh:
            full_handshake(context, server)
            return False
        return resume(context, server, session)
    finally:
        live.close()


SWITCHES = [("validated", "CERT_NONE"), ("CERT_NONE", "validated"), ("validated", "no-host-check"),
            ("no-host-check", "validated")]


@pytest.mark.parametrize(("first", "then"), SWITCHES, ids=["-then-".join(s) for s in SWITCHES])
def test_a_resumed_session_is_refused_after_a_mode_switch_once_its_chain_holds_a_blocked_key(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path, first: str, then: str
) -> None:
    with pytest.raises(PinMismatchError, match="blocked key"):
        mode_switch(local_chain, local_server, tmp_path, first, then)


@pytest.mark.parametrize(("first", "then"), SWITCHES, ids=["-then-".join(s) for s in SWITCHES])
def test_a_full_handshake_after_the_mode_switch_is_refused(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path, first: str, then: str
) -> None:
    # The control for the finding: the same client, without resumption, refuses the blocked key.
    with pytest.raises(PinMismatchError, match="blocked key"):
        mode_switch(local_chain, local_server, tmp_path, first, then, fresh=True)


@pytest.mark.parametrize(("first", "then"), SWITCHES, ids=["-then-".join(s) for s in SWITCHES])
def test_sessions_resume_across_the_mode_switch(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path, first: str, then: str
) -> None:
    # What the finding relies on: the server resumes the session whatever the client's settings now are.
    # Where this OpenSSL does not resume it here (seen with OpenSSL 3.5), those tests test full handshakes only.
    if not mode_switch(local_chain, local_server, tmp_path, first, then, block=False):
        pytest.skip("the session was not resumed with this OpenSSL: the resumption tests test full handshakes only")


@pytest.mark.parametrize(("first", "then"), [("CERT_NONE", "no-host-check"), ("no-host-check", "CERT_NONE")])
def test_a_resumed_session_between_unvalidated_modes_is_refused_once_its_chain_holds_a_blocked_key(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path, first: str, then: str
) -> None:
    # Both unvalidated settings remember under the same key: the served chain is found, and refused.
    with pytest.raises(PinMismatchError, match="blocked key"):
        mode_switch(local_chain, local_server, tmp_path, first, then)


def test_renegotiation_stays_refused_whatever_is_assigned_to_options(local_chain: Chain) -> None:
    from pinengine import PinPolicy

    context = create_pinned_context(PinPolicy.from_mapping({"domains": [{"host": LOCAL, "pins": [OTHER_PIN, THIRD_PIN]}]}))
    context.options = 0
    context.options &= ~ssl.OP_NO_RENEGOTIATION
    context.options = ssl.OP_NO_COMPRESSION
    assert isinstance(context, PinnedSSLContext)
    assert context.options & ssl.OP_NO_RENEGOTIATION


# -- hostile values in error messages ---------------------------------------------------------

PIN_A = OTHER_PIN
PIN_B = THIRD_PIN
HUGE = "x" * 200_000 + "\nFORGED LOG LINE"
#: Longer than any message quoting a value cut after 100 characters needs.
MESSAGE_BOUND = 2_000


def message_of(call: Any) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(info.value)


def short_and_one_line(message: str) -> bool:
    return len(message) < MESSAGE_BOUND and "FORGED LOG LINE" not in message


def store_file(tmp_path: Path, **fields: Any) -> Path:
    record = {"host": "a.test", "pins": [PIN_A], "first_seen": 1, "last_seen": 1, "expires_at": None,
              "source": "tofu", **fields}
    path = tmp_path / "store.json"
    path.write_text(json.dumps({"format": "pinengine-pin-store", "version": 1, "records": [record]}))
    return path


def read_store(path: Path) -> Any:
    from pinengine.stores import JSONFileStore

    return JSONFileStore(path).get("b.test")


@pytest.mark.parametrize("fields", [{"host": HUGE}, {"host": HUGE, "pins": ["not a pin"]}], ids=["host", "host+pin"])
def test_a_store_records_host_name_is_quoted_cut_short(tmp_path: Path, fields: dict[str, Any]) -> None:
    from pinengine.stores import StoreError

    path = store_file(tmp_path, **fields)
    with pytest.raises(StoreError) as info:
        read_store(path)
    assert short_and_one_line(str(info.value)), len(str(info.value))


def test_an_sqlite_store_rows_host_name_is_quoted_cut_short(tmp_path: Path) -> None:
    import sqlite3

    from pinengine.stores import PinRecord, SQLiteStore, StoreError

    path = tmp_path / "pins.sqlite3"
    with SQLiteStore(path) as store:
        store.put(PinRecord.create("a.test", [PIN_A]))
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE pin_records SET host = ?, pins = ?", (HUGE, "not json"))
    db.close()
    with SQLiteStore(path) as store, pytest.raises(StoreError) as info:
        store.list()
    assert short_and_one_line(str(info.value)), len(str(info.value))


@pytest.mark.parametrize("fields", [{HUGE: 1}, {"source": HUGE}], ids=["field", "source"])
def test_other_store_record_values_are_quoted_cut_short(tmp_path: Path, fields: dict[str, Any]) -> None:
    from pinengine.stores import StoreError

    path = store_file(tmp_path, **fields)
    with pytest.raises(StoreError) as info:
        read_store(path)
    assert len(str(info.value)) < MESSAGE_BOUND, len(str(info.value))


def test_a_store_records_bad_pin_and_long_report_uri_are_quoted_cut_short(tmp_path: Path) -> None:
    from pinengine.stores import StoreError

    for fields in ({"pins": ["sha256/" + "A" * 600 + "\nFORGED LOG LINE"]}, {"report_uri": HUGE}):
        path = store_file(tmp_path, **fields)
        with pytest.raises(StoreError) as info:
            read_store(path)
        assert short_and_one_line(str(info.value)), len(str(info.value))


@pytest.mark.parametrize("field", ["first_seen", "last_seen", "expires_at"])
def test_a_store_time_too_large_for_a_float_is_a_store_error(tmp_path: Path, field: str) -> None:
    from pinengine.stores import StoreError

    path = store_file(tmp_path)
    text = path.read_text().replace(f'"{field}": {"null" if field == "expires_at" else "1"}', f'"{field}": 1{"0" * 400}')
    assert "0" * 400 in text
    path.write_text(text)
    with pytest.raises(StoreError):
        read_store(path)


def test_a_store_time_that_is_an_infinite_float_is_a_store_error(tmp_path: Path) -> None:
    # The control: 1e400 reads as inf, and a non-finite time is refused as corrupt.
    from pinengine.stores import StoreError

    path = store_file(tmp_path)
    path.write_text(path.read_text().replace('"first_seen": 1', '"first_seen": 1e400'))
    with pytest.raises(StoreError):
        read_store(path)


def test_a_store_document_naming_a_key_twice_is_refused(tmp_path: Path) -> None:
    from pinengine.stores import StoreError

    path = store_file(tmp_path)
    path.write_text(path.read_text().replace('"source": "tofu"', '"source": "tofu", "source": "hpkp"'))
    with pytest.raises(StoreError):
        read_store(path)


def policy_with(**fields: Any) -> dict[str, Any]:
    return {"domains": [{"host": "a.test", "pins": [PIN_A, PIN_B], **fields}]}


@pytest.mark.parametrize("field", ["mode", "expires", "report_uri", "position"])
def test_policy_values_are_quoted_cut_short(field: str) -> None:
    from pinengine import PinPolicy

    if field == "position":
        mapping = policy_with(pins=[{"pin": PIN_A, "position": HUGE}, PIN_B])
    else:
        mapping = policy_with(**{field: HUGE})
    assert short_and_one_line(message_of(lambda: PinPolicy.from_mapping(mapping)))


@pytest.mark.parametrize("mapping", [policy_with(**{HUGE: 1}), {"domains": [{"host": HUGE, "pins": [PIN_A, PIN_B]}]},
                                     policy_with(pins=["sha256/" + HUGE, PIN_B]), {HUGE: 1, "domains": []}],
                         ids=["unknown-key", "host", "pin", "top-level-key"])
def test_policy_keys_hosts_and_pins_are_quoted_cut_short(mapping: dict[str, Any]) -> None:
    from pinengine import PinPolicy

    assert short_and_one_line(message_of(lambda: PinPolicy.from_mapping(mapping)))


# -- live policy recheck of connections through a proxy ---------------------------------------


class TLSProxyFront:
    """An HTTPS proxy on loopback: TLS (for 127.0.0.1) in front of a ConnectProxy; ``cafile`` trusts it."""

    def __init__(self, upstream_port: int) -> None:
        chain = make_chain("p256", "127.0.0.1")
        self._dir = tempfile.TemporaryDirectory(prefix="pinengine-rt4-")
        d = Path(self._dir.name)
        (d / "chain.pem").write_bytes(pem(chain.leaf) + pem(chain.intermediate))
        (d / "key.pem").write_bytes(key_pem(chain.leaf_key))
        (d / "ca.pem").write_bytes(pem(chain.root))
        self.cafile = str(d / "ca.pem")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(d / "chain.pem"), str(d / "key.pem"))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.upstream_port = upstream_port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _handle(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            with self.context.wrap_socket(raw, server_side=True) as front, \
                    socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10) as upstream:
                back = threading.Thread(target=self._pump, args=(upstream, front), daemon=True)
                back.start()
                self._pump(front, upstream)
                back.join(10)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        self._dir.cleanup()


def recheck_through_proxy(chain: Chain, server: TLSServer, tmp_path: Path, https_proxy: bool,
                          clear_pool: bool = False) -> None:
    """A request through a proxy (HTTPS or HTTP), a new live version blocking the intermediate's key,
    a second request: it must be refused on a new handshake (the pooled connection closed by the recheck)."""
    import urllib3

    from pinengine.hooks.urllib3 import PinnedProxyManager
    from pinengine.live_policy import LivePolicy

    proxy = ConnectProxy()
    front = TLSProxyFront(proxy.port) if https_proxy else None
    path = tmp_path / "policy.json"
    pins = [pin(chain.ders[0]), OTHER_PIN]
    write_live(path, pins, [])
    live = LivePolicy.from_file(path, interval=None, on_update="recheck")
    try:
        if front is not None:
            manager = PinnedProxyManager(f"https://127.0.0.1:{front.port}", live, ca_certs=server.cafile,
                                         proxy_ssl_context=ssl.create_default_context(cafile=front.cafile),
                                         retries=False)
        else:
            manager = PinnedProxyManager(proxy.url, live, ca_certs=server.cafile, retries=False)
        live.watch(manager)
        assert manager.request("GET", server.url()).status == 200
        assert server.connections == 1
        write_live(path, pins, [pin(chain.ders[1])])
        assert live.reload()
        if clear_pool:
            manager.clear()
        with pytest.raises(urllib3.exceptions.SSLError):
            manager.request("GET", server.url())
        assert server.connections == 2
    finally:
        live.close()
        if front is not None:
            front.close()
        proxy.close()


def test_recheck_closes_a_connection_through_an_https_proxy_whose_chain_now_holds_a_blocked_key(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path
) -> None:
    recheck_through_proxy(local_chain, local_server, tmp_path, https_proxy=True)


def test_recheck_closes_a_connection_through_an_http_proxy_whose_chain_now_holds_a_blocked_key(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path
) -> None:
    recheck_through_proxy(local_chain, local_server, tmp_path, https_proxy=False)


def test_a_new_connection_through_an_https_proxy_is_refused_once_its_chain_holds_a_blocked_key(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path
) -> None:
    # The control for the finding: the hook itself (a PinnedSSLObject inside urllib3's SSLTransport) refuses it.
    recheck_through_proxy(local_chain, local_server, tmp_path, https_proxy=True, clear_pool=True)


# -- plans remembered for exact str names only -----------------------------------------------


class Alias(str):
    """A name whose text is ``bank.test`` but which hashes and compares as ``other.test``."""

    def __hash__(self) -> int:
        return hash("other.test")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str.__eq__("other.test", other)


@pytest.mark.both_cores
@pytest.mark.parametrize("batch", [False, True], ids=["verify", "verify_batch"])
def test_a_str_subclass_posing_as_an_unpinned_name_is_judged_on_its_own_text(backend: str, batch: bool) -> None:
    from pinengine import PinPolicy

    chain = make_chain("p256", "bank.test")
    policy = PinPolicy.from_mapping({"domains": [{"host": "bank.test", "pins": [PIN_A, PIN_B]}]})
    for _ in range(2):  # other.test's plan (unpinned) remembered, then asked again
        assert policy.verify("other.test", chain.ders[:2]).status.value == "not-pinned"
    if batch:
        (outcome,) = policy.verify_batch([(Alias("bank.test"), chain.ders[:2])])
        assert isinstance(outcome, PinMismatchError), outcome
    else:
        with pytest.raises(PinMismatchError):
            policy.verify(Alias("bank.test"), chain.ders[:2])


def test_watch_with_an_httpx_client_says_it_cannot_recheck_it(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path
) -> None:
    # Found: watch(httpx.Client) was accepted and did nothing, so a newly blocked key stayed in use on the
    # pooled connection. Its pool cannot be rechecked from here: watch() says so.
    httpx = pytest.importorskip("httpx")
    from pinengine.live_policy import LivePolicy

    path = tmp_path / "policy.json"
    write_live(path, [pin(local_chain.ders[0]), OTHER_PIN], [])
    live = LivePolicy.from_file(path, interval=None, on_update="recheck")
    try:
        with httpx.Client(verify=create_pinned_context(live, cafile=local_server.cafile)) as client:
            with pytest.raises(TypeError, match="cannot be rechecked"):
                live.watch(client)
    finally:
        live.close()


def test_a_new_httpx_connection_is_refused_once_its_chain_holds_a_blocked_key(
    local_chain: Chain, local_server: TLSServer, tmp_path: Path
) -> None:
    # The control: the pinned context refuses the key on the next handshake httpx makes.
    httpx = pytest.importorskip("httpx")
    from pinengine.live_policy import LivePolicy

    path = tmp_path / "policy.json"
    pins = [pin(local_chain.ders[0]), OTHER_PIN]
    write_live(path, pins, [pin(local_chain.ders[1])])
    live = LivePolicy.from_file(path, interval=None)
    try:
        with httpx.Client(verify=create_pinned_context(live, cafile=local_server.cafile)) as client:
            with pytest.raises(httpx.ConnectError) as info:
                client.get(local_server.url())
        cause: BaseException | None = info.value
        while cause is not None and not isinstance(cause, PinMismatchError):
            cause = cause.__cause__ or cause.__context__
        assert isinstance(cause, PinMismatchError), repr(info.value)
    finally:
        live.close()


# -- unsigned bundles in error messages ---------------------------------------------------------


def bundle_keys() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return [ed25519.Ed25519PrivateKey.generate().public_key()]


def outer_bundle(**fields: Any) -> bytes:
    doc = {"format": "pinengine-bundle/1", "key_id": "k", "payload": "", "signature": "", **fields}
    return json.dumps(doc).encode()


def test_an_unsigned_bundles_unknown_keys_are_quoted_cut_short() -> None:
    from pinengine.bundles import BundleError, read_bundle

    data = outer_bundle(**{"x" * 100_000 + "\nFORGED LOG LINE": 1})
    with pytest.raises(BundleError) as info:
        read_bundle(data, bundle_keys())
    assert short_and_one_line(str(info.value)), len(str(info.value))


def test_an_unsigned_bundles_key_id_does_not_add_lines_to_the_error() -> None:
    from pinengine.bundles import BundleError, read_bundle

    data = outer_bundle(key_id="k\nFORGED LOG LINE")
    with pytest.raises(BundleError) as info:
        read_bundle(data, bundle_keys())
    assert "\n" not in str(info.value), str(info.value)


def test_an_unsigned_bundles_oversized_key_id_and_duplicate_keys_are_refused_briefly() -> None:
    from pinengine.bundles import BundleError, read_bundle

    for data in (outer_bundle(key_id="k" * 100_000),
                 outer_bundle().replace(b'"key_id": "k"', b'"key_id": "k", "key_id": "' + b"x" * 100_000 + b'"')):
        with pytest.raises(BundleError) as info:
            read_bundle(data, bundle_keys())
        assert len(str(info.value)) < MESSAGE_BOUND, len(str(info.value))


# -- settings on a live policy ------------------------------------------------------------------


def live_mapping() -> dict[str, Any]:
    return {"domains": [{"host": "a.test", "pins": [PIN_A, PIN_B]}]}


def test_a_setting_made_while_versions_are_swapped_reaches_every_later_version() -> None:
    from pinengine import PinPolicy
    from pinengine.live_policy import LivePolicy

    live = LivePolicy.from_mapping(live_mapping())
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            live.update(PinPolicy.from_mapping(live_mapping()))

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        for value in range(1, 200):
            live.cache_ttl = float(value)
            live.hpkp = bool(value % 2)
    finally:
        stop.set()
        thread.join(10)
    live.update(PinPolicy.from_mapping(live_mapping()))
    assert live.current.cache_ttl == 199.0 and live.current.hpkp is True
    assert live.updates > 1


@pytest.mark.parametrize("name", ["entries", "blocked_pins", "allow_sha1", "source", "store"])
def test_what_a_version_is_made_of_cannot_be_set_on_the_live_policy(name: str) -> None:
    from pinengine.live_policy import LivePolicy

    live = LivePolicy.from_mapping(live_mapping())
    before = getattr(live.current, name, None) if name != "store" else None
    with pytest.raises(AttributeError):
        setattr(live, name, ())
    if name != "store":
        assert getattr(live.current, name) == before


def test_hpkp_report_uri_with_control_characters_is_refused() -> None:
    from pinengine.hpkp import HPKPError, parse_header

    for uri in ("https://r.test/\x1b[2J", "https://r.test/a\rb", "https://r.test/a\nb", "https://r.test/\u2028"):
        with pytest.raises(HPKPError) as info:
            parse_header(f'max-age=60; pin-sha256="{"A" * 43}="; pin-sha256="{"B" * 42}A="; report-uri="{uri}"')
        assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


# -- CERT_OPTIONAL: is a chain that failed validation ever taken as validated? -----------------

BANK = "bank.test"


def forged_leaf_chain(real: Chain) -> Chain:
    """A leaf for bank.test naming the real intermediate as issuer (its key identifier too), signed by
    another key: a chain OpenSSL builds up to the real root, but whose first signature is false."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    attacker, key = new_key("p256"), new_key("p256")
    now = dt.datetime.now(dt.timezone.utc)
    ski = real.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BANK)]))
        .issuer_name(real.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(BANK)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(attacker, hashes.SHA256())
    )
    return Chain(leaf, real.intermediate, real.root, key, real.intermediate_key, real.root_key)


@pytest.mark.parametrize("impostor", ["other-name", "forged-signature"])
@pytest.mark.parametrize("verify_mode", [ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL], ids=["REQUIRED", "OPTIONAL"])
def test_a_ca_pinned_host_refuses_an_impostor_whatever_verify_mode_says(impostor: str, verify_mode: int) -> None:
    from pinengine import PinPolicy

    real = make_chain("p256", BANK)
    if impostor == "other-name":  # a genuine certificate of the pinned CA, for another name
        key = new_key("p256")
        leaf = make_cert("evil.test", key, real.intermediate, real.intermediate_key, ca=False, sans=("evil.test",))
        served = Chain(leaf, real.intermediate, real.root, key, real.intermediate_key, real.root_key)
    else:
        served = forged_leaf_chain(real)
    policy = PinPolicy.from_mapping({"domains": [{"host": BANK, "pins": [pin(real.ders[1]), pin(real.ders[2])]}]})
    with TLSServer(served) as server:
        context = create_pinned_context(policy, cafile=server.cafile)
        context.verify_mode = verify_mode
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            with pytest.raises(ssl.SSLError):
                context.wrap_socket(sock, server_hostname=BANK).close()
        finally:
            sock.close()


# -- a server's HPKP header in error messages ---------------------------------------------------

LONG_VALUE = "A" * 8000


@pytest.mark.parametrize("header", [f'max-age=60; pin-sha256="{LONG_VALUE}"', f"max-age={LONG_VALUE}",
                                    f"max-age=60; includeSubDomains={LONG_VALUE}",
                                    f"max-age=60; pin-sha256={LONG_VALUE}"],
                         ids=["pin", "max-age", "includeSubDomains", "unquoted-pin"])
def test_hpkp_header_values_are_quoted_cut_short(header: str) -> None:
    from pinengine.hpkp import HPKPError, parse_header

    with pytest.raises(HPKPError) as info:
        parse_header(header)
    assert len(str(info.value)) < MESSAGE_BOUND, len(str(info.value))


def test_an_hpkp_header_over_its_bound_is_refused_with_a_short_message() -> None:
    from pinengine.hpkp import HPKPError, parse_header

    with pytest.raises(HPKPError) as info:
        parse_header(f"max-age=60; {LONG_VALUE}=1; {LONG_VALUE}=2")
    assert len(str(info.value)) < MESSAGE_BOUND, len(str(info.value))


# -- the cost of formatting a certificate's name -------------------------------------------------


def der_with_long_oid(size: int) -> bytes:
    """A generated leaf whose subject is one attribute with an OID of ``size`` continuation bytes."""
    from tests.der import SUBJECT, Node, cert_tree, prim, seq, tbs

    root = cert_tree()
    oid = prim(0x06, b"\x2a" + b"\xff" * size + b"\x01")
    tbs(root)[SUBJECT] = seq(Node(0x31, kids=[seq(oid, prim(0x0C, b"x"))]))
    return root.encode()


@pytest.mark.both_cores
def test_a_long_oid_in_a_subject_is_formatted_in_linear_time(backend: str) -> None:
    # Found: formatting was quadratic in an OID arc's length (96 KB took over a second). At 1 MB a
    # quadratic formatter takes minutes; the generous bound only tells linear from quadratic.
    import time

    from pinengine import parse_certificate

    der = der_with_long_oid(1_000_000)
    started = time.perf_counter()
    subject = parse_certificate(der).subject
    elapsed = time.perf_counter() - started
    assert subject.startswith("#")  # a Name no OID reading fits: its hex
    assert elapsed < 5, f"{elapsed:.2f} s to format one name"


@pytest.mark.both_cores
def test_a_short_oid_in_a_subject_is_formatted(backend: str) -> None:
    from pinengine import parse_certificate

    assert parse_certificate(der_with_long_oid(2)).subject.endswith("=x")


@pytest.mark.parametrize("spelling", ["bu\u0308cher.test", "B\u00dcCHER.test.", "b\u00fccher\uff0etest",
                                      "xn--bcher-kva.test"])
def test_a_second_entry_for_another_spelling_of_a_name_is_refused(spelling: str) -> None:
    from pinengine import PinPolicy, PolicyError

    mapping = {"domains": [{"host": "b\u00fccher.test", "pins": [PIN_A, PIN_B]},
                           {"host": spelling, "pins": [PIN_B, "sha256/" + "C" * 42 + "A="], "mode": "report-only"}]}
    with pytest.raises(PolicyError, match="duplicate entry"):
        PinPolicy.from_mapping(mapping)
