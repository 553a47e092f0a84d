"""PinPolicy: host patterns, normalisation, positions, expiry, modes, blocked keys, files."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from pinengine import (
    CertificateParseError,
    DomainEntry,
    Pin,
    PinMismatchError,
    PinPolicy,
    PolicyError,
)
from pinengine.policy import normalize_hostname
from tests.certs import Chain, cached_chain, make_chain

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256")


@pytest.fixture(scope="module")
def other() -> Chain:
    return make_chain("p256", "other.example")


def pin_of(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def policy_for(host: str, pins: list[Any], **extra: Any) -> PinPolicy:
    entry: dict[str, Any] = {"host": host, "pins": pins}
    entry.update(extra)
    return PinPolicy.from_mapping({"domains": [entry]})


# -- host patterns -------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, extra, yes, no",
    [
        ("example.com", {}, ["example.com", "EXAMPLE.com.", " Example.Com "], ["a.example.com", "example.org", "xexample.com"]),
        ("example.com", {"include_subdomains": True}, ["example.com", "a.example.com", "a.b.c.example.com"], ["example.org", "badexample.com"]),
        ("*.example.com", {}, ["a.example.com", "A.EXAMPLE.COM."], ["example.com", "a.b.example.com", "aexample.com"]),
        ("**.example.com", {}, ["example.com", "a.example.com", "a.b.example.com"], ["example.org", "aexample.com"]),
        ("bücher.example", {}, ["xn--bcher-kva.example", "BÜCHER.example", "bücher.example."], ["bucher.example"]),
        ("xn--bcher-kva.example", {}, ["bücher.example"], []),
        ("127.0.0.1", {}, ["127.0.0.1"], ["127.0.0.2", "localhost"]),
        ("::1", {}, ["::1", "[::1]", "0:0:0:0:0:0:0:1", "::0001"], ["::2"]),
    ],
)
def test_host_patterns(chain: Chain, pattern: str, extra: dict[str, Any], yes: list[str], no: list[str]) -> None:
    leaf, root = chain.ders[0], chain.ders[2]
    policy = policy_for(pattern, [pin_of(leaf), pin_of(root)], **extra)
    wrong = make_chain("p256").ders
    for host in yes:
        assert policy.entry_for(host) is not None, host
        assert policy.verify(host, chain.ders).status == "match"
        with pytest.raises(PinMismatchError):
            policy.verify(host, wrong)
    for host in no:
        assert policy.entry_for(host) is None, host
        result = policy.verify(host, wrong)
        assert result.status == "not-pinned" and not result.pinned


def test_most_specific_entry_wins(chain: Chain) -> None:
    p = [pin_of(chain.ders[0]), pin_of(chain.ders[1])]
    policy = PinPolicy.from_mapping(
        {
            "domains": [
                {"host": "**.example.com", "pins": p},
                {"host": "*.example.com", "pins": p},
                {"host": "api.example.com", "pins": p},
                {"host": "**.deep.example.com", "pins": p},
            ]
        }
    )
    assert policy.entry_for("api.example.com").host == "api.example.com"  # type: ignore[union-attr]
    assert policy.entry_for("www.example.com").host == "*.example.com"  # type: ignore[union-attr]
    assert policy.entry_for("a.b.example.com").host == "**.example.com"  # type: ignore[union-attr]
    assert policy.entry_for("example.com").host == "**.example.com"  # type: ignore[union-attr]
    assert policy.entry_for("x.y.deep.example.com").host == "**.deep.example.com"  # type: ignore[union-attr]
    assert policy.entry_for("deep.example.com").host == "**.deep.example.com"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "host, why",
    [
        ("", "empty"),
        ("a..b", "empty label"),
        ("*", "empty|wildcard"),
        ("foo*.example.com", "wildcard must be the whole leftmost label"),
        ("a.*.example.com", "wildcard"),
        ("*.*.example.com", "wildcard"),
        ("ex ample.com", "not allowed"),
        ("a" * 64 + ".com", "longer than 63"),
        ("*.127.0.0.1", "IP address matches exactly|wildcard"),
    ],
)
def test_bad_hosts(chain: Chain, host: str, why: str) -> None:
    with pytest.raises(PolicyError, match=why):
        policy_for(host, [pin_of(chain.ders[0]), pin_of(chain.ders[1])])


def test_ip_with_include_subdomains_refused(chain: Chain) -> None:
    with pytest.raises(PolicyError, match="IP address matches exactly"):
        policy_for("10.0.0.1", [pin_of(chain.ders[0]), pin_of(chain.ders[1])], include_subdomains=True)


def test_wildcard_with_include_subdomains_refused(chain: Chain) -> None:
    with pytest.raises(PolicyError, match="include_subdomains cannot be combined"):
        policy_for("*.example.com", [pin_of(chain.ders[0]), pin_of(chain.ders[1])], include_subdomains=True)


def test_normalize_hostname() -> None:
    assert normalize_hostname("WWW.Example.COM.") == "www.example.com"
    assert normalize_hostname("münchen.de") == "xn--mnchen-3ya.de"
    assert normalize_hostname("straße.de") == "xn--strae-oqa.de"  # UTS #46 as clients send it, not IDNA 2003's strasse.de
    assert normalize_hostname("127.1") == "127.0.0.1"  # as the socket reads it
    assert normalize_hostname("[2001:DB8::1]") == "2001:db8::1"
    with pytest.raises(ValueError):
        normalize_hostname(".")
    with pytest.raises(TypeError):
        normalize_hostname(b"example.com")  # type: ignore[arg-type]


# -- matching --------------------------------------------------------------------


@pytest.mark.parametrize("index, role", [(0, "leaf"), (1, "intermediate"), (2, "root")])
def test_match_at_each_position(chain: Chain, other: Chain, index: int, role: str) -> None:
    policy = policy_for("example.com", [pin_of(chain.ders[index]), pin_of(other.ders[0])])
    result = policy.verify("example.com", chain.ders)
    assert result.status == "match"
    assert [(m.index, m.role, str(m.pin)) for m in result.matches] == [(index, role, pin_of(chain.ders[index]))]


def test_match_through_backup_pin(chain: Chain, other: Chain) -> None:
    policy = policy_for("example.com", [pin_of(other.ders[0]), pin_of(chain.ders[1])])
    result = policy.verify("example.com", chain.ders)
    assert result.matches[0].pin == Pin.parse(pin_of(chain.ders[1]))


def test_certificate_pins(chain: Chain, other: Chain) -> None:
    cert_pin = str(Pin.from_certificate(chain.ders[1], kind="certificate"))
    policy = policy_for("example.com", [cert_pin, pin_of(make_chain().ders[0])])
    assert policy.verify("example.com", chain.ders).matches[0].index == 1
    with pytest.raises(PinMismatchError) as info:
        policy.verify("example.com", other.ders)
    # the message shows certificate pins of the chain too, since the entry uses them
    assert str(Pin.from_certificate(other.ders[0], kind="certificate")) in str(info.value)


def test_mismatch_message_lists_chain_and_pins(chain: Chain, other: Chain) -> None:
    pins = [pin_of(other.ders[0]), pin_of(other.ders[2])]
    policy = policy_for("example.com", pins)
    with pytest.raises(PinMismatchError) as info:
        policy.verify("Example.com", chain.ders)
    err = info.value
    text = str(err)
    assert "Certificate pinning failure for example.com" in text
    for der in chain.ders:
        assert pin_of(der) in text
    assert "CN=example.com" in text and "CN=pinengine test root" in text
    for p in pins:
        assert p in text
    # the right pin can be pasted from the message
    assert text.index(pin_of(chain.ders[0])) < text.index("Pinned keys")
    import ssl

    assert isinstance(err, ssl.SSLCertVerificationError)
    assert err.hostname == "example.com"
    assert err.result.status == "mismatch"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "position, matches_at",
    [("leaf", [0]), ("intermediate", [1]), ("root", [2]), ("any", [0, 1, 2])],
)
def test_positions(position: str, matches_at: list[int]) -> None:
    # One key used at every position (it happens with cross-signing), so a pin
    # on it can only be told apart by the position it is allowed at.
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.certs import make_cert, new_key

    key = new_key("p256")
    root = make_cert("root", key, None, key, ca=True)
    inter = make_cert("inter", key, root, key, ca=True)
    leaf = make_cert("example.com", key, inter, key, ca=False)
    ders = [c.public_bytes(Encoding.DER) for c in (leaf, inter, root)]
    pin = pin_of(ders[0])
    policy = policy_for("example.com", [{"pin": pin, "position": position}, pin_of(make_chain().ders[0])])
    result = policy.verify("example.com", ders)
    assert [m.index for m in result.matches] == matches_at


def test_entry_level_position_default(chain: Chain) -> None:
    policy = policy_for("example.com", [pin_of(chain.ders[2]), pin_of(chain.ders[1])], position="leaf")
    with pytest.raises(PinMismatchError, match="leaf only"):
        policy.verify("example.com", chain.ders)


def test_unverified_chain_only_leaf_counts(chain: Chain) -> None:
    policy = policy_for("example.com", [pin_of(chain.ders[1]), pin_of(chain.ders[2])])
    assert policy.verify("example.com", chain.ders).status == "match"
    with pytest.raises(PinMismatchError, match="only the leaf can match"):
        policy.verify("example.com", chain.ders, verified=False)
    leaf_policy = policy_for("example.com", [pin_of(chain.ders[0]), pin_of(chain.ders[2])])
    result = leaf_policy.verify("example.com", chain.ders, verified=False)
    assert [m.index for m in result.matches] == [0]
    assert result.verified is False


def test_malformed_chain_fails_closed(chain: Chain) -> None:
    policy = policy_for("example.com", [pin_of(chain.ders[0]), pin_of(chain.ders[1])])
    with pytest.raises(CertificateParseError, match="certificate 1"):
        policy.verify("example.com", [chain.ders[0], chain.ders[1][:-3]])
    with pytest.raises(CertificateParseError):
        policy.verify("example.com", [])


# -- modes, expiry, blocked keys --------------------------------------------------


def test_report_only_lets_through_and_logs(chain: Chain, other: Chain, caplog: pytest.LogCaptureFixture) -> None:
    policy = policy_for("example.com", [pin_of(other.ders[0]), pin_of(other.ders[1])], mode="report-only")
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        result = policy.verify("example.com", chain.ders)
    assert result.status == "report-only"
    assert "allowed, report-only" in caplog.text
    assert pin_of(chain.ders[0]) in caplog.text
    # one record per violation (the reporter's), not a second one from the policy
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    assert result.message.startswith("Certificate pinning failure for example.com!")


def test_expired_entry_not_enforced_and_logged(chain: Chain, other: Chain, caplog: pytest.LogCaptureFixture) -> None:
    policy = policy_for("example.com", [pin_of(other.ders[0]), pin_of(other.ders[1])], expires="2020-01-01")
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        assert policy.verify("example.com", chain.ders).status == "expired"
    assert "expired on 2020-01-02" in caplog.text
    # the expiry date itself is still enforced (pins hold through that day, UTC)
    during = dt.datetime(2020, 1, 1, 23, 59, tzinfo=UTC)
    with pytest.raises(PinMismatchError):
        policy.verify("example.com", chain.ders, now=during)
    after = dt.datetime(2020, 1, 2, 0, 0, tzinfo=UTC)
    assert policy.verify("example.com", chain.ders, now=after).status == "expired"


def test_expires_forms() -> None:
    a, b = pin_of(make_chain().ders[0]), pin_of(make_chain().ders[0])
    p = policy_for("example.com", [a, b], expires=dt.date(2030, 5, 1))
    assert p.entries[0].expires == dt.datetime(2030, 5, 2, tzinfo=UTC)
    p = policy_for("example.com", [a, b], expires="2030-05-01T12:00:00+02:00")
    assert p.entries[0].expires == dt.datetime(2030, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(PolicyError, match="no timezone"):
        policy_for("example.com", [a, b], expires="2030-05-01T12:00:00")
    with pytest.raises(PolicyError, match="not a date"):
        policy_for("example.com", [a, b], expires="soon")


def test_blocked_pin_refuses_even_when_another_matches(chain: Chain) -> None:
    policy = policy_for(
        "example.com",
        [pin_of(chain.ders[0]), pin_of(chain.ders[2])],
        blocked_pins=[pin_of(chain.ders[1])],
    )
    with pytest.raises(PinMismatchError, match="blocked key") as info:
        policy.verify("example.com", chain.ders)
    assert info.value.result.blocked[0].index == 1  # type: ignore[attr-defined]


def test_policy_wide_blocked_pin_applies_to_unpinned_hosts(chain: Chain) -> None:
    policy = PinPolicy.from_mapping(
        {
            "blocked_pins": [pin_of(chain.ders[1])],
            "domains": [{"host": "pinned.example", "pins": [pin_of(chain.ders[0]), pin_of(chain.ders[2])]}],
        }
    )
    with pytest.raises(PinMismatchError, match="blocked key"):
        policy.verify("unpinned.example", chain.ders)
    with pytest.raises(PinMismatchError, match="blocked key"):
        policy.verify("pinned.example", chain.ders)
    # a blocked key counts even in an unverified chain: refusing is always safe
    with pytest.raises(PinMismatchError, match="blocked key"):
        policy.verify("unpinned.example", chain.ders, verified=False)
    assert policy.verify("unpinned.example", make_chain().ders).status == "not-pinned"


# -- the backup-pin rule and schema errors -----------------------------------------


def test_single_pin_refused_without_opt_out(chain: Chain) -> None:
    with pytest.raises(PolicyError, match="add a backup pin"):
        policy_for("example.com", [pin_of(chain.ders[0])])
    p = policy_for("example.com", [pin_of(chain.ders[0])], require_backup_pin=False)
    assert p.verify("example.com", chain.ders).status == "match"


@pytest.mark.parametrize(
    "mapping, why",
    [
        ([], "a policy is a table/object"),
        ({}, "no 'domains' list"),
        ({"domains": {}}, "'domains' must be a list"),
        ({"domains": [], "extra": 1}, "unknown key 'extra'"),
        ({"domains": [], "version": 2}, "version 2 is not supported"),
        ({"domains": ["example.com"]}, r"domains\[0\]: a domain entry is a table"),
        ({"domains": [{"pins": []}]}, "missing 'host'"),
        ({"domains": [{"host": "a.com"}]}, "missing 'pins'"),
        ({"domains": [{"host": "a.com", "pins": "sha256/x"}]}, "expected a list"),
        ({"domains": [{"host": "a.com", "pins": []}]}, "no pins"),
        ({"domains": [{"host": "a.com", "pins": ["sha256/bad"]}]}, r"pins\[0\]: invalid pin 'sha256/bad'"),
        ({"domains": [{"host": "a.com", "pins": [5]}]}, "expected a pin string"),
        ({"domains": [{"host": "a.com", "pins": [{"position": "leaf"}]}]}, "missing 'pin'"),
        ({"domains": [{"host": "a.com", "pins": [], "include_subdomain": True}]}, "did you mean 'include_subdomains'"),
        ({"domains": [{"host": "a.com", "pins": [], "mode": "audit"}]}, "mode"),
        ({"domains": [{"host": "a.com", "pins": [], "include_subdomains": "yes"}]}, "must be true or false"),
        ({"domains": [{"host": "a.com", "pins": [], "report_uri": "ftp://x"}]}, "not an http"),
        ({"domains": [{"host": 5, "pins": []}]}, "expected a string"),
    ],
)
def test_schema_errors(mapping: Any, why: str) -> None:
    with pytest.raises(PolicyError, match=why):
        PinPolicy.from_mapping(mapping)


def test_duplicate_entries_and_pins(chain: Chain) -> None:
    p = [pin_of(chain.ders[0]), pin_of(chain.ders[1])]
    with pytest.raises(PolicyError, match="duplicate entry"):
        PinPolicy.from_mapping({"domains": [{"host": "a.com", "pins": p}, {"host": "A.com.", "pins": p}]})
    with pytest.raises(PolicyError, match="duplicate entry"):
        PinPolicy.from_mapping(
            {"domains": [{"host": "**.a.com", "pins": p}, {"host": "a.com", "pins": p, "include_subdomains": True}]}
        )
    with pytest.raises(PolicyError, match="listed twice"):
        policy_for("a.com", [p[0], p[0]])


def test_sha1_pins_need_policy_opt_in() -> None:
    import base64
    import hashlib

    sha1 = "sha1/" + base64.b64encode(hashlib.sha1(b"k").digest()).decode()
    other = pin_of(make_chain().ders[0])
    with pytest.raises(PolicyError, match="SHA-1"):
        policy_for("a.com", [sha1, other])
    with pytest.warns(UserWarning, match="SHA-1"):
        p = PinPolicy.from_mapping({"allow_sha1": True, "domains": [{"host": "a.com", "pins": [sha1, other]}]})
    assert p.entries[0].pins[0].algorithm == "sha1"


# -- files -------------------------------------------------------------------------


def _toml(chain: Chain, other: Chain) -> str:
    return f"""
# pins for the example service
blocked_pins = []

[[domains]]
host = "**.example.com"
pins = ["{pin_of(chain.ders[0])}", {{ pin = "{pin_of(other.ders[2])}", position = "root" }}]
mode = "enforce"
expires = 2099-12-31
report_uri = "https://reports.example.net/pins"
"""


def test_toml_and_json_files_are_the_same_policy(tmp_path: Path, chain: Chain, other: Chain) -> None:
    toml_path = tmp_path / "policy.toml"
    toml_path.write_text(_toml(chain, other))
    from_toml = PinPolicy.from_file(toml_path)
    json_path = tmp_path / "policy.json"
    json_path.write_text(json.dumps(from_toml.to_mapping()))
    from_json = PinPolicy.from_file(json_path)
    assert from_toml.entries == from_json.entries
    entry = from_toml.entries[0]
    assert entry.host == "**.example.com"
    assert entry.report_uri == ("https://reports.example.net/pins",)
    assert entry.expires == dt.datetime(2100, 1, 1, tzinfo=UTC)
    assert from_json.verify("www.example.com", chain.ders).status == "match"


@pytest.mark.parametrize(
    "name, content, why",
    [
        ("p.toml", "domains = [", "invalid TOML"),
        ("p.json", '{"domains": [', "invalid JSON at line 1"),
        ("p.toml", "[[domains]]\nhost = 'a.com'\npins = ['sha256/AAAA']\n", r"domains\[0\] \(a.com\)\.pins\[0\]: invalid pin 'sha256/AAAA'"),
        ("p.json", '{"domains": [{"host": "a.com", "pins": ["sha256/AAAA"], "modee": 1}]}', "unknown key 'modee'"),
        ("p.toml", "\xff\xfe", "not UTF-8|invalid TOML"),
    ],
)
def test_broken_policy_files_name_the_file(tmp_path: Path, name: str, content: str, why: str) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(PolicyError) as info:
        PinPolicy.from_file(path)
    assert str(path) in str(info.value)
    import re

    assert re.search(why, str(info.value)), str(info.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        PinPolicy.from_file(tmp_path / "nope.toml")


def test_entries_built_in_code(chain: Chain) -> None:
    entry = DomainEntry("API.Example.COM.", (pin_of(chain.ders[0]), pin_of(chain.ders[1])))  # type: ignore[arg-type]
    policy = PinPolicy([entry])
    assert entry.host == "api.example.com"
    assert policy.verify("api.example.com", chain.ders).status == "match"


# -- batches -------------------------------------------------------------------------


def test_verify_batch_matches_verify(chain: Chain, other: Chain) -> None:
    policy = PinPolicy.from_mapping(
        {
            "domains": [
                {"host": "good.example", "pins": [pin_of(chain.ders[0]), pin_of(chain.ders[2])]},
                {"host": "bad.example", "pins": [pin_of(other.ders[0]), pin_of(other.ders[2])]},
                {"host": "ro.example", "pins": [pin_of(other.ders[0]), pin_of(other.ders[2])], "mode": "report-only"},
            ]
        }
    )
    items = [
        ("good.example", chain.ders),
        ("bad.example", chain.ders),
        ("ro.example", chain.ders),
        ("free.example", chain.ders),
        ("good.example", [chain.ders[0][:-1]]),
        ("bad host name", chain.ders),
    ] * 3
    results = policy.verify_batch(items)
    assert len(results) == len(items)
    for (host, ders), got in zip(items, results):
        try:
            want: Any = policy.verify(host, ders)
        except (PinMismatchError, CertificateParseError, ValueError) as exc:
            want = exc
        assert type(got) is type(want)
        if isinstance(want, Exception):
            assert str(got) == str(want)
        else:
            assert got == want


def test_status_is_a_str_enum_of_every_outcome(chain: Chain, other: Chain) -> None:
    from pinengine import Status

    assert [s.value for s in Status] == ["match", "not-pinned", "expired", "report-only", "mismatch", "parse-error"]
    policy = policy_for("example.com", [pin_of(chain.ders[1]), pin_of(other.ders[1])])
    result = policy.verify("example.com", chain.ders)
    assert result.status is Status.MATCH
    assert result.status == "match" and f"{result.status}" == "match" and repr(result.status) == "'match'"
    assert json.loads(json.dumps({"status": result.status})) == {"status": "match"}
    assert policy.verify("other.example", chain.ders).status is Status.NOT_PINNED
