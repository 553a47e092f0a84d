"""Attack: reach a pinned non-ASCII name through a spelling its entry was not registered under.

Clients do not encode non-ASCII names alike. urllib3 and requests use IDNA
2008 label by label, httpx IDNA 2008 after ``str.lower()``, aiohttp (yarl)
UTS #46 and, when IDNA 2008 refuses a name, IDNA 2003; the ssl module (so
http.client, urllib and asyncio) turns ``server_hostname`` into IDNA 2003.
For names with deviation characters (ß, ς, ZWJ, ZWNJ) IDNA 2003 and 2008
give different names: ``straße.test`` is ``xn--strae-oqa.test`` for the
first and ``strasse.test`` for the last. A policy entry registered under one
of them let a certificate from an unpinned CA through on the other.

Each test connects a real client to a real TLS server on 127.0.0.1 whose
certificate carries the name that client sends (so without pinning it
connects) and whose key the policy does not pin. Only name resolution is
replaced (``.test`` / ``.example`` names go to 127.0.0.1).
"""

from __future__ import annotations

import functools
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import idna
import pytest

from pinengine import DomainEntry, Pin, PinMismatchError, PinPolicy, PolicyError
from pinengine._errors import HostnameError
from pinengine.cli import lint_policy, main
from pinengine.policy import normalize_hostname
from tests.certs import Chain, cached_chain, make_chain
from tests.security.hostname_clients import CLIENTS, fetch, refused, resolve_test_names
from tests.tls import TLSServer

ZWJ = "\u200d"
ZWNJ = "\u200c"
SINHALA_ZWJ = f"ශ්{ZWJ}රී"  # a joiner after a virama: valid in IDNA 2008, dropped by IDNA 2003
SINHALA_ZWNJ = f"ශ්{ZWNJ}රී"
# "STRAßE.test" in full-width letters and a full-width full stop, as UTS #46 maps them.
FULL_WIDTH = "\uff33\uff34\uff32\uff21\u00df\uff25\uff0etest"


def _encoders() -> list[Callable[[str], bytes]]:
    """How each client encodes a host name (written out here, independently of pinengine)."""
    return [
        lambda s: idna.encode(s, uts46=True),  # aiohttp (yarl)
        lambda s: idna.encode(s.lower()),  # httpx
        lambda s: b".".join(  # urllib3 and requests
            label.lower().encode() if label.isascii() else idna.encode(label.lower(), strict=True, std3_rules=True)
            for label in s.split(".")
        ),
        lambda s: s.encode("idna"),  # the ssl module (http.client); aiohttp when IDNA 2008 refuses
    ]


def client_spellings(name: str) -> list[str]:
    """Every ASCII name some client sends for ``name``."""
    forms = []
    for encode in _encoders():
        try:
            forms.append(encode(name).decode("ascii").lower())
        except UnicodeError:
            pass
    return list(dict.fromkeys(forms))


@functools.cache
def chain_for(host: str) -> Chain:
    """A chain from an unpinned CA whose leaf is valid for every name a client sends for ``host``."""
    first, *rest = client_spellings(host)
    return make_chain("p256", first, extra_sans=tuple(rest))


def pins_of(chain: Chain) -> list[str]:
    return [str(Pin.from_certificate(chain.ders[0])), str(Pin.from_certificate(chain.ders[1]))]


FOREIGN = pins_of(cached_chain("p256", "foreign.example"))


def policy_for(*entries: tuple[str, list[str]]) -> PinPolicy:
    return PinPolicy.from_mapping({"domains": [{"host": host, "pins": pins} for host, pins in entries]})


# (host the user gives the client, the policy entry's host, clients that refuse the host outright)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("straße.test", "straße.test", ()),
    ("straße.test", "xn--strae-oqa.test", ()),
    ("Straße.test", "STRAßE.Test", ()),
    ("faß.example", "faß.example", ()),
    ("σας.test", "σας.test", ()),
    ("σας.test", "xn--mxa8ab.test", ()),
    (f"{SINHALA_ZWJ}.test", f"{SINHALA_ZWJ}.test", ("aiohttp",)),  # yarl refuses joiners
    (f"{SINHALA_ZWNJ}.test", "xn--10cl1a0b160p.test", ("aiohttp",)),
    ("www.straße.test", "*.straße.test", ()),
    ("a.b.straße.test", "**.xn--strae-oqa.test", ()),
    # UTS #46 mappings (full-width letters and dot, upper case): only yarl maps them.
    (FULL_WIDTH, "straße.test", ("requests", "urllib3", "httpx")),
    # IDNA 2008 refuses the snowman: yarl falls back to IDNA 2003 for the whole name.
    ("☃.straße.test", "**.xn--strae-oqa.test", ("requests", "urllib3", "httpx")),
    ("_dmarc.straße.test", "**.xn--strae-oqa.test", ("httpx",)),
]


@pytest.fixture
def test_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """.test and .example names resolve to 127.0.0.1 for this test."""
    resolve_test_names(monkeypatch)


def _params(refusing: bool) -> list[Any]:
    return [
        pytest.param(client, host, entry, id=f"{client}-{host}-{entry}")
        for host, entry, refusers in CASES
        for client in CLIENTS
        if (client in refusers) == refusing
    ]


@pytest.mark.usefixtures("test_names")
@pytest.mark.parametrize("client, host, entry", _params(refusing=False))
def test_entry_pins_every_spelling_a_client_sends(client: str, host: str, entry: str) -> None:
    chain = chain_for(host)
    with TLSServer(chain) as server:
        # Unpinned, the client connects: the certificate is valid for the name it sends.
        assert fetch(client, host, server.port, policy=None, cafile=server.cafile) == 200
        # Pinned to the server's own keys, it still connects, through the entry.
        good = policy_for((entry, pins_of(chain)))
        assert fetch(client, host, server.port, policy=good, cafile=server.cafile) == 200
        # Pinned to other keys, the entry must apply whichever spelling the client sent.
        error = refused(client, host, server.port, policy=policy_for((entry, FOREIGN)), cafile=server.cafile)
        assert isinstance(error, PinMismatchError), error


@pytest.mark.usefixtures("test_names")
@pytest.mark.parametrize("client, host, entry", _params(refusing=True))
def test_clients_that_refuse_a_name_never_connect(client: str, host: str, entry: str) -> None:
    # The combinations left out above: the client refuses the name before any connection is made.
    with TLSServer(chain_for(host)) as server:
        with pytest.raises(Exception):  # noqa: B017 - each client has its own error for a bad URL
            fetch(client, host, server.port, policy=policy_for((entry, FOREIGN)), cafile=server.cafile)
        assert server.connections == 0


# -- the decision for a non-ASCII name given to the policy directly ------------------


@pytest.fixture(scope="module")
def chain() -> Chain:
    return chain_for("straße.test")


@pytest.mark.parametrize(
    "spelling",
    ["straße.test", "Straße.test.", "strasse.test", "STRASSE.TEST", "xn--strae-oqa.test", "XN--STRAE-OQA.test",
     FULL_WIDTH, "\uff33\uff34\uff32\uff21\u00df\uff25\uff0e\uff54\uff45\uff53\uff54",
     "straße\u3002test", "straße\uff61test"],
)
@pytest.mark.parametrize("written", ["straße.test", "xn--strae-oqa.test", "STRAßE.Test"])
def test_one_entry_for_every_spelling(chain: Chain, written: str, spelling: str) -> None:
    policy = policy_for((written, FOREIGN))
    entry = policy.entry_for(spelling)
    assert entry is not None and entry.host == "xn--strae-oqa.test", spelling
    with pytest.raises(PinMismatchError):
        policy.verify(spelling, chain.ders)


def test_unicode_name_whose_spellings_pick_different_entries_is_refused(chain: Chain) -> None:
    # Only the IDNA 2003 spelling is pinned: aiohttp would reach the other one unpinned.
    policy = policy_for(("strasse.test", FOREIGN))
    for call in (lambda: policy.verify("straße.test", chain.ders), lambda: policy.entry_for("straße.test")):
        with pytest.raises(HostnameError) as info:
            call()
        assert "xn--strae-oqa.test" in str(info.value) and "strasse.test" in str(info.value)
    results = policy.verify_batch([("straße.test", chain.ders)])
    assert isinstance(results[0], HostnameError)
    # The A-labels themselves are unambiguous.
    assert policy.entry_for("xn--strae-oqa.test") is None
    assert policy.entry_for("strasse.test") is not None


def test_explicit_entry_wins_over_an_idna2003_spelling(chain: Chain) -> None:
    other = make_chain("p256", "strasse.test")
    policy = policy_for(("straße.test", pins_of(chain)), ("strasse.test", pins_of(other)))
    assert policy.entry_for("strasse.test").host == "strasse.test"  # type: ignore[union-attr]
    assert policy.entry_for("xn--strae-oqa.test").host == "xn--strae-oqa.test"  # type: ignore[union-attr]
    with pytest.raises(HostnameError, match=r"strasse\.test"):
        policy.verify("straße.test", chain.ders)
    # Entry order does not matter.
    flipped = policy_for(("strasse.test", pins_of(other)), ("straße.test", pins_of(chain)))
    assert flipped.entry_for("strasse.test").host == "strasse.test"  # type: ignore[union-attr]


def test_two_entries_sharing_an_idna2003_spelling_are_refused() -> None:
    # sß and ßs are different IDNA 2008 names; IDNA 2003 makes both sss.
    with pytest.raises(PolicyError, match=r"sss\.test") as info:
        policy_for(("sß.test", FOREIGN), ("ßs.test", FOREIGN))
    assert "xn--s-qfa.test" in str(info.value) and "xn--s-pfa.test" in str(info.value)


def test_entry_that_clients_spell_as_two_names_is_refused() -> None:
    # Upper-case final sigma: urllib3 lowers label by label (to the final form), httpx the whole name and
    # UTS #46 to the medial form.
    with pytest.raises(PolicyError) as info:
        policy_for(("ΌΣΟΣ.test", FOREIGN))
    assert "xn--0xahb7a.test" in str(info.value) and "xn--0xagb9a.test" in str(info.value)
    # Written in lower case, as meant, the entry covers what every client sends.
    policy = policy_for(("όσος.test", FOREIGN))
    assert policy.entry_for("ΌΣΟΣ.test") is not None
    assert policy.entry_for("xn--0xahb7a.test") is policy.entry_for("xn--0xagb9a.test") is not None
    # Pinned as the medial form only, a client sending the final form would get through: refused.
    narrow = policy_for(("όσοσ.test", FOREIGN))
    with pytest.raises(HostnameError, match=r"xn--0xagb9a\.test"):
        narrow.entry_for("ΌΣΟΣ.test")


def test_entry_spellings_and_round_trip() -> None:
    entry = DomainEntry("*.straße.test", tuple(FOREIGN))
    assert entry.host == "*.xn--strae-oqa.test"
    assert entry.spellings == ("*.xn--strae-oqa.test", "*.strasse.test")
    assert entry.covers("www.strasse.test") and entry.covers("www.xn--strae-oqa.test")
    assert not entry.covers("strasse.test")
    plain = DomainEntry("bücher.example", tuple(FOREIGN))
    assert plain.spellings == ("xn--bcher-kva.example",)
    policy = policy_for(("straße.test", FOREIGN))
    again = PinPolicy.from_mapping(policy.to_mapping())
    assert again.entry_for("strasse.test") is not None


def test_check_says_what_a_non_ascii_entry_covers(chain: Chain) -> None:
    other = make_chain("p256", "strasse.test")
    policy = policy_for(("straße.test", pins_of(chain)), ("münchen.test", pins_of(other)))
    findings = lint_policy(policy)
    notes = [text for severity, text in findings if severity == "note"]
    assert any("xn--strae-oqa.test" in n and "straße.test" in n and "strasse.test" in n and "IDNA 2003" in n
               for n in notes), findings
    assert any("xn--mnchen-3ya.test" in n and "münchen.test" in n for n in notes), findings
    assert not [f for f in findings if f[0] == "warning" and "strasse" in f[1]]
    shadowed = policy_for(("straße.test", pins_of(chain)), ("strasse.test", pins_of(other)))
    warnings = [text for severity, text in lint_policy(shadowed) if severity == "warning"]
    assert any("'strasse.test'" in w and "xn--strae-oqa.test" in w for w in warnings), warnings


def test_check_command_notes_do_not_count_as_warnings(tmp_path: Path, chain: Chain) -> None:
    path = tmp_path / "policy.toml"
    pins = ", ".join(f'"{p}"' for p in pins_of(chain))
    path.write_text(f'[[domains]]\nhost = "straße.test"\npins = [{pins}]\n', encoding="utf-8")
    out = io.StringIO()
    code = main(["check", "--strict", str(path)], out)
    assert code == 0, out.getvalue()
    assert "note: entry 'xn--strae-oqa.test' (straße.test) covers" in out.getvalue()
    assert "0 errors, 0 warnings" in out.getvalue()


# -- bounds and cost -------------------------------------------------------------------


def test_long_names_are_refused_quickly() -> None:
    for name in ("ß" * 100_000, "a." * 50_000 + "ß", "\uff45" * 100_000, "\u00ad" * 100_000 + "a"):
        started = time.perf_counter()
        with pytest.raises(HostnameError, match="long"):
            normalize_hostname(name)
        assert time.perf_counter() - started < 2.0
    # A name at the bound of the DNS (253 octets as an A-label) still works.
    label = "ß" * 20  # xn--zcaaaa... : 4 + 20 + 1 octets
    name = ".".join([label] * 9)
    assert len(normalize_hostname(name)) <= 253


def test_ascii_names_do_not_import_idna() -> None:
    code = (
        "import sys\n"
        "from pinengine.policy import PinPolicy, normalize_hostname\n"
        "normalize_hostname('Example.COM.'); normalize_hostname('127.1'); normalize_hostname('[::1]')\n"
        "assert 'idna' not in sys.modules, 'idna imported'\n"
        "normalize_hostname('straße.test')\n"
        "assert 'idna' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("host", ["\ufe61.example", "a.\uff0a.example", "\uff0a\uff0a.example"])
def test_asterisks_that_map_to_a_wildcard_are_refused(host: str) -> None:
    # UTS #46 maps the small and full-width asterisks to '*': no wildcard may come from a mapping.
    with pytest.raises(PolicyError, match="wildcard"):
        policy_for((host, FOREIGN))
