"""Red team on the decision path: remembered plans, shared schema objects, the lazy TLS hook.

Each test pits a policy that has remembered earlier decisions against what a
fresh policy decides on the same input: a remembered plan may only save
work, never change a decision, lose a violation report or a counted decision.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from pinengine import DomainEntry, Pin, PinMismatchError, PinPolicy
from pinengine._errors import PolicyError
from pinengine._types import Status
from pinengine.hooks.ssl import create_pinned_context
from tests.certs import Chain, make_cert, make_chain, new_key
from tests.collector import Recorder
from tests.tls import TLSServer

HOST = "bank.test"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def good() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(scope="module")
def evil() -> Chain:
    return make_chain("p256", HOST)


def mapping(good: Chain, **entry: Any) -> dict[str, Any]:
    return {"domains": [{"host": HOST, "pins": [pin(good.ders[1]), pin(good.ders[2])], **entry}]}


def decide(policy: PinPolicy, host: str, chain: list[bytes], **kw: Any) -> str:
    try:
        return policy.verify(host, chain, **kw).status
    except PinMismatchError as exc:
        return f"refused:{exc.result.status}"  # type: ignore[attr-defined]


SPELLINGS = [HOST, "BANK.TEST", "bank.test.", "Bank.Test.", "bAnK.tEsT"]


def test_spellings_alternating_good_and_evil_chains_match_a_fresh_policy(good: Chain, evil: Chain) -> None:
    rec = Recorder()
    policy = PinPolicy.from_mapping(mapping(good), reporter=rec)
    refusals = 0
    for round_ in range(3):
        for host in SPELLINGS:
            for chain, verified in ((good.ders, True), (evil.ders, True), (good.ders, False), (evil.ders[:1] + good.ders[1:], False)):
                fresh = PinPolicy.from_mapping(mapping(good), reporter=Recorder())
                want = decide(fresh, host, list(chain), verified=verified)
                got = decide(policy, host, list(chain), verified=verified)
                assert got == want, (round_, host, verified)
                refusals += got.startswith("refused")
    # every refusal reached the reporter, remembered plan or not
    assert refusals == 3 * len(SPELLINGS) * 3
    assert len(rec.events) == refusals


def test_report_only_violations_are_reported_every_time(good: Chain, evil: Chain) -> None:
    rec = Recorder()
    policy = PinPolicy.from_mapping(mapping(good, mode="report-only"), reporter=rec)
    for _ in range(5):
        assert policy.verify(HOST, good.ders).status == Status.MATCH
        assert policy.verify(HOST, evil.ders).status == Status.REPORT_ONLY
    assert len(rec.events) == 5
    assert all(e.status == Status.REPORT_ONLY for e in rec.events)


def test_blocked_key_after_a_remembered_match_is_refused(good: Chain) -> None:
    # the same leaf key, reissued under a compromised intermediate that the policy blocks
    bad_key = new_key("p256")
    bad_inter = make_cert("compromised intermediate", bad_key, good.root, good.root_key, ca=True)
    leaf = make_cert(HOST, good.leaf_key, bad_inter, bad_key, ca=False, sans=(HOST,))
    from cryptography.hazmat.primitives import serialization

    ders = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, bad_inter, good.root)]
    m = mapping(good)
    m["blocked_pins"] = [pin(ders[1])]
    for mode in ("enforce", "report-only"):
        m["domains"][0]["mode"] = mode
        policy = PinPolicy.from_mapping(m, reporter=Recorder())
        for _ in range(3):
            assert policy.verify(HOST, good.ders).status == Status.MATCH
            with pytest.raises(PinMismatchError):
                policy.verify(HOST, ders)  # root pin matches, blocked intermediate refuses
            with pytest.raises(PinMismatchError):
                policy.verify(HOST, ders, verified=False)
        # the same for an unpinned name, which has a remembered NOT_PINNED plan
        assert policy.verify("other.test", good.ders).status == Status.NOT_PINNED
        with pytest.raises(PinMismatchError):
            policy.verify("other.test", ders)


def test_verify_batch_repeats_agree_with_fresh_verify(good: Chain, evil: Chain) -> None:
    rec = Recorder()
    policy = PinPolicy.from_mapping(mapping(good), reporter=rec)
    items = [(h, c) for h in SPELLINGS + ["other.test", "bad..name"] for c in (good.ders, evil.ders)] * 3
    refused = 0
    for verified in (True, False, True):
        out = policy.verify_batch(items, verified=verified)
        refused += sum(isinstance(r, PinMismatchError) for r in out)
        for (host, chain), got in zip(items, out):
            fresh = PinPolicy.from_mapping(mapping(good), reporter=Recorder())
            try:
                want: Any = fresh.verify(host, chain, verified=verified).status
            except (PinMismatchError, ValueError) as exc:
                want = type(exc)
            if isinstance(got, Exception):
                assert isinstance(got, want), (host, verified)
            else:
                assert got.status == want, (host, verified)
    # verified: the evil chain of each spelling; unverified: both (only the leaf can match a CA pin)
    assert refused == 3 * len(SPELLINGS) + 3 * len(SPELLINGS) * 2 + 3 * len(SPELLINGS)
    assert len(rec.events) == refused


def test_threads_racing_verify_and_batch_on_one_policy(good: Chain, evil: Chain) -> None:
    rec = Recorder()
    from pinengine.policy import PLAN_CACHE_SIZE

    policy = PinPolicy.from_mapping(mapping(good, include_subdomains=True), reporter=rec)
    errors: list[str] = []
    n_threads, n_iter = 4, 150

    def worker(t: int) -> None:
        for i in range(n_iter):
            host = f"h{(i * 7 + t) % (PLAN_CACHE_SIZE // 64)}.{HOST}"
            try:
                if policy.verify(host, good.ders).status != Status.MATCH:
                    errors.append("good not matched")
            except PinMismatchError:
                errors.append("good refused")
            try:
                policy.verify(host, evil.ders)
                errors.append(f"evil accepted for {host}")
            except PinMismatchError:
                pass
            out = policy.verify_batch([(host, evil.ders), (host, good.ders)])
            if not isinstance(out[0], PinMismatchError) or getattr(out[1], "status", None) != Status.MATCH:
                errors.append("batch wrong")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(rec.events) == 2 * n_threads * n_iter


def test_expiring_entry_and_now_argument_are_never_remembered(good: Chain, evil: Chain) -> None:
    import datetime as dt

    policy = PinPolicy.from_mapping(mapping(good, expires="2030-01-01"), reporter=Recorder())
    before = dt.datetime(2029, 12, 31, tzinfo=dt.timezone.utc)
    after = dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc)
    for _ in range(3):
        with pytest.raises(PinMismatchError):
            policy.verify(HOST, evil.ders, now=before)
        assert policy.verify(HOST, evil.ders, now=after).status == Status.EXPIRED
        assert policy.verify(HOST, good.ders, now=before).status == Status.MATCH
    plain = PinPolicy.from_mapping(mapping(good), reporter=Recorder())
    assert plain.verify(HOST, good.ders).status == Status.MATCH
    with pytest.raises(PinMismatchError):
        plain.verify(HOST, evil.ders, now=after)  # a remembered plan does not turn now= into a pass


def _fields(entry: DomainEntry) -> dict[str, Any]:
    return {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"include_subdomains": True},
        {"mode": "report-only", "report_uri": "https://r.example/x"},
        {"expires": "2031-05-06"},
        {"blocked_pins": []},
        {"require_backup_pin": False},
    ],
    ids=["plain", "subdomains", "report", "expires", "blocked-empty", "no-backup"],
)
def test_from_mapping_and_domainentry_build_the_same_entry(good: Chain, spec: dict[str, Any]) -> None:
    pins = [pin(good.ders[1]), pin(good.ders[2])]
    read = PinPolicy.from_mapping({"domains": [{"host": "Bank.Test.", "pins": pins, **spec}]}).entries[0]
    kw = dict(spec)
    if "expires" in kw:
        kw["expires"] = read.expires
    built = DomainEntry("Bank.Test.", tuple(pins), **kw)  # type: ignore[arg-type]
    assert _fields(read) == _fields(built)
    assert type(read.pins) is tuple and type(read.positions) is tuple and type(read.report_uri) is tuple
    assert type(read.blocked_pins) is tuple


@pytest.mark.parametrize("key", ["host", "pins", "mode", "report_uri", "blocked_pins", "position", "include_subdomains", "dynamic"])
def test_json_null_values_fail_closed(tmp_path: Path, good: Chain, key: str) -> None:
    entry: dict[str, Any] = {"host": HOST, "pins": [pin(good.ders[1]), pin(good.ders[2])]}
    entry[key] = None
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"domains": [entry]}))
    with pytest.raises(PolicyError):
        PinPolicy.from_file(path)


@pytest.mark.parametrize("key", ["expires", "ttl"])
def test_json_null_optional_values_mean_absent(tmp_path: Path, good: Chain, evil: Chain, key: str) -> None:
    entry: dict[str, Any] = {"host": HOST, "pins": [pin(good.ders[1]), pin(good.ders[2])], key: None}
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"domains": [entry]}))
    try:
        policy = PinPolicy.from_file(path, reporter=Recorder())
    except PolicyError:
        return  # refusing null is fine too
    assert policy.entries[0].expires is None and policy.entries[0].ttl is None
    with pytest.raises(PinMismatchError):
        policy.verify(HOST, evil.ders)


def test_shared_pin_tuples_do_not_leak_between_entries(good: Chain, evil: Chain) -> None:
    pins = [pin(good.ders[1]), pin(good.ders[2])]
    policy = PinPolicy.from_mapping(
        {
            "domains": [
                {"host": "a.test", "pins": pins, "mode": "report-only"},
                {"host": "b.test", "pins": pins},
                {"host": "c.test", "pins": pins[::-1], "blocked_pins": [pin(evil.ders[1])]},
            ]
        },
        reporter=Recorder(),
    )
    assert policy.verify("a.test", evil.ders).status == Status.REPORT_ONLY
    with pytest.raises(PinMismatchError):
        policy.verify("b.test", evil.ders)
    assert policy.verify("b.test", good.ders).status == Status.MATCH
    assert policy.entries[0].blocked_pins == () and policy.entries[1].blocked_pins == ()


def test_cert_none_forged_leaf_with_real_pinned_intermediate_is_refused_on_loopback(good: Chain) -> None:
    # the attacker sends its own leaf, "issued" by a key it made up, plus the genuine pinned intermediate
    forged_key = new_key("p256")
    leaf = make_cert(HOST, forged_key, good.intermediate, forged_key, ca=False, sans=(HOST,))
    forged = Chain(leaf, good.intermediate, good.root, forged_key, forged_key, forged_key)
    policy = PinPolicy.from_mapping(mapping(good), reporter=Recorder())
    with TLSServer(forged) as srv:
        for verify_mode in (ssl.CERT_NONE, ssl.CERT_REQUIRED):
            # CERT_NONE, and validation against the pinned root with check_hostname off (the leaf's
            # signature is bogus, so that one fails validation: the handshake is refused either way)
            ctx = create_pinned_context(policy, cafile=srv.cafile)
            ctx.check_hostname = False
            ctx.verify_mode = verify_mode
            for _ in range(3):
                raw = socket.create_connection((srv.host, srv.port), timeout=10)
                with pytest.raises(ssl.SSLError if verify_mode == ssl.CERT_REQUIRED else PinMismatchError) as info:
                    ctx.wrap_socket(raw, server_hostname=HOST).close()
                raw.close()
                if isinstance(info.value, PinMismatchError):
                    assert info.value.result.verified is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("entry_host", "spellings"),
    [
        ("bücher.test", ["bücher.test", "BÜCHER.TEST.", "xn--bcher-kva.test", "XN--BCHER-KVA.TEST", "bu\u0308cher.test"]),
        ("127.0.0.1", ["127.0.0.1", "127.1", "0x7f.0.0.1", "0177.0.0.1", "2130706433"]),
        ("::1", ["::1", "[::1]", "0:0:0:0:0:0:0:1", "0::1"]),
    ],
    ids=["idna", "ipv4", "ipv6"],
)
def test_idna_and_ip_spellings_with_remembered_plans_match_a_fresh_policy(
    good: Chain, evil: Chain, entry_host: str, spellings: list[str]
) -> None:
    m = {"domains": [{"host": entry_host, "pins": [pin(good.ders[1]), pin(good.ders[2])]}]}
    rec = Recorder()
    policy = PinPolicy.from_mapping(m, reporter=rec)
    refused = 0
    for _ in range(3):
        for host in spellings:
            for chain in (good.ders, evil.ders):
                fresh = PinPolicy.from_mapping(m, reporter=Recorder())
                try:
                    want: Any = decide(fresh, host, list(chain))
                except ValueError as exc:
                    want = type(exc)
                try:
                    got: Any = decide(policy, host, list(chain))
                except ValueError as exc:
                    got = type(exc)
                assert got == want, host
                refused += isinstance(got, str) and got.startswith("refused")
    assert len(rec.events) == refused


def test_every_remembered_decision_is_counted(good: Chain, evil: Chain) -> None:
    from pinengine.metrics import METRICS

    host = "counted.bank.test"
    policy = PinPolicy.from_mapping(mapping(good, include_subdomains=True), reporter=Recorder())
    before = METRICS.stats()["totals"]
    n = 50
    for _ in range(n):
        assert policy.verify(host, good.ders).status == Status.MATCH
        assert policy.verify("unpinned.example", good.ders).status == Status.NOT_PINNED
        with pytest.raises(PinMismatchError):
            policy.verify(host, evil.ders)
    out = policy.verify_batch([(host, good.ders), ("unpinned.example", good.ders), (host, evil.ders)] * n)
    assert len(out) == 3 * n
    after = METRICS.stats()["totals"]
    assert after["verifications"] - before["verifications"] == 6 * n
    assert after["matches"] - before["matches"] == 2 * n
    assert after["not_pinned"] - before["not_pinned"] == 2 * n
    assert after["mismatches"] - before["mismatches"] == 2 * n


def test_malformed_certificate_after_a_remembered_match_fails_closed(good: Chain) -> None:
    from pinengine import CertificateParseError

    policy = PinPolicy.from_mapping(mapping(good), reporter=Recorder())
    for bad in ([*good.ders, b"\x30\x03\x02\x01\x01"], [good.ders[0], b"garbage", good.ders[2]], [b"", *good.ders[1:]]):
        for _ in range(2):
            assert policy.verify(HOST, good.ders).status == Status.MATCH
            assert policy.verify("unpinned.example", good.ders).status == Status.NOT_PINNED
            for host in (HOST, "unpinned.example"):
                with pytest.raises(CertificateParseError):
                    policy.verify(host, bad)
                (out,) = policy.verify_batch([(host, bad)])
                assert isinstance(out, CertificateParseError)


def test_tofu_entry_spellings_and_batch_never_record_or_pass_a_second_key(good: Chain) -> None:
    from pinengine.stores.memory import MemoryStore

    other_key = new_key("p256")
    other_leaf = make_cert(HOST, other_key, good.intermediate, good.intermediate_key, ca=False, sans=(HOST,))
    other = Chain(other_leaf, good.intermediate, good.root, other_key, good.intermediate_key, good.root_key)
    store = MemoryStore()
    rec = Recorder()
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": HOST, "dynamic": True, "include_subdomains": True}]}, store=store, reporter=rec
    )
    assert policy.verify(HOST, good.ders).status == Status.MATCH  # first key recorded
    refused = 0
    for _ in range(3):
        for host in SPELLINGS:
            assert policy.verify(host, good.ders).status == Status.MATCH
            with pytest.raises(PinMismatchError):
                policy.verify(host, other.ders)
            a, b = policy.verify_batch([(host, other.ders), (host, good.ders)])
            assert isinstance(a, PinMismatchError) and getattr(b, "status", None) == Status.MATCH
            refused += 2
    assert store.get(HOST).pins == (pin(good.ders[0]),)
    assert len(rec.events) == refused


def test_asyncio_sslobject_path_refuses_every_time_and_reports_each(good: Chain, evil: Chain) -> None:
    import asyncio

    rec = Recorder()
    policy = PinPolicy.from_mapping(mapping(good), reporter=rec)

    async def connect(srv: TLSServer, ctx: ssl.SSLContext) -> None:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(srv.host, srv.port, ssl=ctx, server_hostname=HOST), 10
        )
        writer.close()

    async def main() -> None:
        with TLSServer(evil) as bad_srv, TLSServer(good) as good_srv:
            bad_ctx = create_pinned_context(policy, cafile=bad_srv.cafile)
            good_ctx = create_pinned_context(policy, cafile=good_srv.cafile)
            for _ in range(3):
                await connect(good_srv, good_ctx)
                with pytest.raises(ssl.SSLError) as info:
                    await connect(bad_srv, bad_ctx)
                assert isinstance(info.value, PinMismatchError) or "pinning" in str(info.value).lower()

    asyncio.run(main())
    assert len(rec.events) == 3
    for e in rec.events:
        assert e.status == Status.MISMATCH
        # the served chain was read while the handshake was in hand: a plain list the reporter can keep
        assert isinstance(e.served_chain, (list, tuple)) and list(e.served_chain) == evil.ders[:2]


@pytest.mark.parametrize(
    "expires",
    [
        __import__("datetime").date(2030, 1, 1),
        __import__("datetime").datetime(2030, 1, 2, tzinfo=__import__("datetime").timezone.utc),
        __import__("datetime").datetime(2030, 1, 2, 1, tzinfo=__import__("datetime").timezone(__import__("datetime").timedelta(hours=1))),
    ],
    ids=["date", "aware-utc", "aware-plus-one"],
)
def test_domainentry_expires_is_read_as_the_schema_reads_it(good: Chain, evil: Chain, expires: Any) -> None:
    # A date in code must mean what "2030-01-01" means in a file (through that day, UTC), not crash
    # every verify with "can't compare datetime.datetime to datetime.date".
    import datetime as dt

    pins = (pin(good.ders[1]), pin(good.ders[2]))
    built = PinPolicy([DomainEntry(HOST, pins, expires=expires)], reporter=Recorder())
    read = PinPolicy.from_mapping(mapping(good, expires="2030-01-01"), reporter=Recorder())
    assert _fields(built.entries[0]) == _fields(read.entries[0])
    for policy in (built, read):
        with pytest.raises(PinMismatchError):
            policy.verify(HOST, evil.ders, now=dt.datetime(2030, 1, 1, 23, tzinfo=dt.timezone.utc))
        assert policy.verify(HOST, evil.ders, now=dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc)).status == Status.EXPIRED
        with pytest.raises(PinMismatchError):
            policy.verify(HOST, evil.ders)  # today: still enforced


def test_domainentry_naive_expires_is_refused_as_in_files(good: Chain) -> None:
    # from_mapping refuses a datetime without a timezone; in code it was taken, and every verify of
    # the host then raised TypeError (can't compare offset-naive and offset-aware datetimes).
    import datetime as dt

    with pytest.raises(PolicyError, match="no timezone"):
        PinPolicy([DomainEntry(HOST, (pin(good.ders[1]), pin(good.ders[2])), expires=dt.datetime(2030, 1, 1))])


def test_huge_pin_lists_stay_linear_and_decide_right(good: Chain, evil: Chain) -> None:
    import base64
    import hashlib
    import time

    filler = [f"sha256/{base64.b64encode(hashlib.sha256(str(i).encode()).digest()).decode()}" for i in range(4_000)]
    m = {
        "blocked_pins": filler[2_000:],
        "domains": [{"host": HOST, "include_subdomains": True, "pins": [*filler[:2_000], pin(good.ders[2])]}],
    }
    started = time.perf_counter()
    policy = PinPolicy.from_mapping(m, reporter=Recorder())
    for i in range(100):
        host = f"h{i}.{HOST}"
        assert policy.verify(host, good.ders).status == Status.MATCH
        assert policy.verify(host, good.ders).status == Status.MATCH
    with pytest.raises(PinMismatchError):
        policy.verify(HOST, evil.ders)
    assert time.perf_counter() - started < 3.0


def test_live_policy_swaps_never_reuse_a_plan_of_another_version(good: Chain, evil: Chain) -> None:
    from pinengine.live_policy import LivePolicy

    unpinned = PinPolicy.from_mapping({"domains": [{"host": "other.test", "pins": [pin(good.ders[1]), pin(good.ders[2])]}]})
    pinned = PinPolicy.from_mapping(mapping(good), reporter=Recorder())
    report_only = PinPolicy.from_mapping(mapping(good, mode="report-only"), reporter=Recorder())
    live = LivePolicy(unpinned)
    for serial, version in enumerate([unpinned, pinned, unpinned, report_only, pinned, unpinned]):
        if serial:
            live.update(version, serial=serial)
        for _ in range(3):
            for host in SPELLINGS:
                fresh = PinPolicy.from_mapping(version.to_mapping(), reporter=Recorder())
                assert decide(live, host, list(evil.ders)) == decide(fresh, host, list(evil.ders)), (serial, host)
                (got,) = live.verify_batch([(host, evil.ders)])
                want = decide(fresh, host, list(evil.ders))
                assert isinstance(got, PinMismatchError) if want.startswith("refused") else got.status == want
