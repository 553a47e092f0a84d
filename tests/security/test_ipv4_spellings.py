"""Attack: reach a pinned IP address through a spelling of it that the policy did not read as that address.

Two parsers decide what an IPv4 literal means. OpenSSL decides whether
``server_hostname`` is an address (and then checks the certificate's IP SAN)
with ``sscanf("%d.%d.%d.%d")``; the socket connects to what ``inet_aton`` /
getaddrinfo read: one to four parts, octal and hex. ``127.000.000.001``,
``127.1``, ``0x7f.0.0.1`` and ``2130706433`` all connect to 127.0.0.1;
pinengine read them with ``ipaddress``, which refuses them, looked them up
as host names, found no entry and let the connection through unpinned.
``0177.0.0.1`` is 177.0.0.1 for OpenSSL and 127.0.0.1 for the socket.

Each test connects a real client to a real TLS server on 127.0.0.1 whose key
the policy (an entry for 127.0.0.1) does not pin; its certificate carries the
name or address OpenSSL checks for each spelling, so unpinned it connects.
"""

from __future__ import annotations

import platform
import socket
import ssl
import time
from typing import Any

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy, PolicyError, _hostnames
from pinengine._errors import HostnameError
from pinengine.policy import normalize_hostname
from tests.certs import Chain, cached_chain, make_chain
from tests.security.hostname_clients import CLIENTS, fetch, refused
from tests.tls import TLSServer

# What OpenSSL checks the certificate for, spelling by spelling: an IP SAN
# where it reads an address, else the spelling as a DNS name. Which spellings
# the ssl module reads as addresses depends on the linked library: OpenSSL 3.0
# reads 127.000.000.001 and 0177.0.0.1 as addresses (sscanf), the ssl module
# of CPython 3.13 on OpenSSL 3.5 reads them as names; the certificate carries
# both readings.
SANS = ("127.0.0.1", "177.0.0.1", "::ffff:127.0.0.1", "127.1", "127.0.1", "0x7f.0.0.1", "0x7f.1",
        "0x7f000001", "2130706433", "127.000.000.001", "0177.0.0.1")

#: Whether the linked ssl reads sscanf-style spellings (0177.0.0.1) as addresses.
PERMISSIVE = _hostnames._ssl_reads_ipv4_permissively()

# (spelling, what pinengine must do, clients that refuse the spelling outright)
SPELLINGS: list[tuple[str, str, tuple[str, ...]]] = [
    ("127.0.0.1", "pinned", ()),
    ("127.000.000.001", "pinned", ("httpx", "aiohttp")),
    ("127.1", "pinned", ("aiohttp",)),
    ("127.0.1", "pinned", ("aiohttp",)),
    ("0x7f.0.0.1", "pinned", ()),
    ("0x7f.1", "pinned", ()),
    ("0x7f000001", "pinned", ()),
    ("2130706433", "pinned", ("aiohttp",)),
    ("::ffff:127.0.0.1", "pinned", ()),
    # Where OpenSSL reads 0177.0.0.1 as 177.0.0.1 (and checks the certificate
    # for that address) while the socket connects to 127.0.0.1, the name is
    # refused; where it reads a DNS name, the pins of 127.0.0.1 apply.
    ("0177.0.0.1", "refused" if PERMISSIVE else "pinned", ("httpx", "aiohttp")),
]


def pins_of(chain: Chain) -> list[str]:
    return [str(Pin.from_certificate(chain.ders[0])), str(Pin.from_certificate(chain.ders[1]))]


@pytest.fixture(scope="module")
def chain() -> Chain:
    return make_chain("p256", "ip.invalid", extra_sans=SANS)


@pytest.fixture(scope="module")
def server(chain: Chain) -> Any:
    with TLSServer(chain) as srv:
        yield srv


def _params(refusing: bool) -> list[Any]:
    return [
        pytest.param(client, spelling, expect, id=f"{client}-{spelling}")
        for spelling, expect, refusers in SPELLINGS
        for client in CLIENTS
        if (client in refusers) == refusing
    ]


@pytest.mark.parametrize("client, spelling, expect", _params(refusing=False))
def test_ip_entry_pins_every_spelling_of_the_address(
    server: TLSServer, chain: Chain, client: str, spelling: str, expect: str
) -> None:
    # Unpinned, the client connects: the certificate is valid for what OpenSSL checks.
    assert fetch(client, spelling, server.port, policy=None, cafile=server.cafile) == 200
    foreign = pins_of(cached_chain("p256", "foreign.example"))
    bad = PinPolicy.from_mapping({"domains": [{"host": "127.0.0.1", "pins": foreign}]})
    error = refused(client, spelling, server.port, policy=bad, cafile=server.cafile)
    if expect == "pinned":
        assert isinstance(error, PinMismatchError), error
        good = PinPolicy.from_mapping({"domains": [{"host": "127.0.0.1", "pins": pins_of(chain)}]})
        assert fetch(client, spelling, server.port, policy=good, cafile=server.cafile) == 200
    else:
        assert isinstance(error, HostnameError), error
        assert "177.0.0.1" in str(error) and "127.0.0.1" in str(error)


@pytest.mark.parametrize("client, spelling, expect", _params(refusing=True))
def test_clients_that_refuse_a_spelling_never_connect(server: TLSServer, client: str, spelling: str, expect: str) -> None:
    before = server.connections
    policy = PinPolicy.from_mapping({"domains": [{"host": "127.0.0.1", "pins": pins_of(cached_chain())}]})
    with pytest.raises(Exception):  # noqa: B017 - each client has its own error for a bad URL
        fetch(client, spelling, server.port, policy=policy, cafile=server.cafile)
    assert server.connections == before


# -- the readings, spelling by spelling ----------------------------------------------------


@pytest.mark.parametrize(
    "spelling, address",
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.65535", "127.0.255.255"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0X7F.0x0.0.1", "127.0.0.1"),
        ("0x0000007f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("4294967295", "255.255.255.255"),
        ("0", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        (" 127.1 ", "127.0.0.1"),
        ("10.0.0.255", "10.0.0.255"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("[::FFFF:7F00:1]", "127.0.0.1"),
        ("::ffff:0:0", "0.0.0.0"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25]", "fe80::1"),
        ("[2001:DB8::0001]", "2001:db8::1"),
        ("::127.0.0.1", "::7f00:1"),  # IPv4-compatible, not mapped: an IPv6 address of its own
        ("\uff11\uff12\uff17\uff0e\uff11", "127.0.0.1"),  # full-width 127.1: UTS #46 and IDNA 2003 map it
    ],
)
def test_spellings_of_an_address(spelling: str, address: str) -> None:
    assert normalize_hostname(spelling) == address
    entry_host = PinPolicy.from_mapping(
        {"domains": [{"host": spelling, "pins": pins_of(cached_chain())}]}
    ).entries[0].host
    assert entry_host == address


# Spellings OpenSSL 3.0's sscanf reads as addresses and plain-dotted-decimal
# readers (the ssl module of CPython 3.13 on OpenSSL 3.5) read as names:
# (spelling, what a refusal names where ssl reads them, what happens where it does not:
# the address the socket connects to, whose pins apply, or the refusal's words).
SSCANF_SPELLINGS = [
    ("0177.0.0.1", ["177.0.0.1", "127.0.0.1"], "127.0.0.1"),  # decimal for OpenSSL, octal for the socket
    ("127.0.0.010", ["127.0.0.10", "127.0.0.8"], "127.0.0.8"),
    ("00000000000127.0.0.1", ["127.0.0.1", "87.0.0.1"], "87.0.0.1"),
    ("010.010.010.010", ["10.10.10.10", "8.8.8.8"], "8.8.8.8"),
    ("08.0.0.1", ["8.0.0.1"], "ends in a number"),  # OpenSSL only: 08 is no octal number
    ("127.-0.0.1", ["127.0.0.1"], "ends in a number"),  # OpenSSL only: sscanf reads the sign
    ("4294967423.0.0.1", ["overflow"], "ends in a number"),  # sscanf overflows (glibc wraps it to 127)
    ("\uff10\uff11\uff17\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", ["177.0.0.1", "127.0.0.1"],
     "127.0.0.1"),  # full-width 0177.0.0.1
]


@pytest.mark.parametrize("spelling, named, plain", SSCANF_SPELLINGS)
def test_sscanf_spellings_as_the_linked_ssl_reads_them(spelling: str, named: list[str], plain: str) -> None:
    pins = pins_of(cached_chain())
    if PERMISSIVE or plain[0] not in "0123456789":
        # Read two ways (or no way at all): refused, naming the readings.
        with pytest.raises(HostnameError) as info:
            normalize_hostname(spelling)
        for text in (named if PERMISSIVE else [plain]):
            assert text in str(info.value), str(info.value)
        with pytest.raises(PolicyError):
            PinPolicy.from_mapping({"domains": [{"host": spelling, "pins": pins}]})
        return
    # The ssl module reads a name (and checks the certificate for it); the
    # socket connects to ``plain``: that address's entry applies.
    assert normalize_hostname(spelling) == plain
    policy = PinPolicy.from_mapping({"domains": [{"host": plain, "pins": pins_of(make_chain())}]})
    with pytest.raises(PinMismatchError):
        policy.verify(spelling, cached_chain().ders)


@pytest.mark.parametrize(
    "spelling, named",
    [
        ("256.0.0.1", ["ends in a number"]),
        ("1.2.3.4.5", ["ends in a number"]),
        ("4294967296", ["ends in a number"]),
        ("0x100000000", ["ends in a number"]),
        ("0x", ["ends in a number"]),
        ("1.2.3.0x", ["ends in a number"]),
        ("example.1", ["ends in a number"]),
        ("a.0x1f", ["ends in a number"]),
        ("127.0.0.1%eth0", ["not allowed"]),
        ("::ffff:127.000.0.1", ["IPv6"]),  # OpenSSL reads the leading zeros, inet_pton does not
        ("fe80::1%", ["zone"]),
        ("fe80::1%a/b", ["zone"]),
        ("[::1", ["IPv6"]),
    ],
)
def test_spellings_read_two_ways_are_refused(spelling: str, named: list[str]) -> None:
    with pytest.raises(HostnameError) as info:
        normalize_hostname(spelling)
    for text in named:
        assert text in str(info.value), str(info.value)
    with pytest.raises(PolicyError):
        PinPolicy.from_mapping({"domains": [{"host": spelling, "pins": pins_of(cached_chain())}]})
    policy = PinPolicy.from_mapping({"domains": [{"host": "127.0.0.1", "pins": pins_of(cached_chain())}]})
    with pytest.raises(HostnameError):
        policy.verify(spelling, cached_chain().ders)


@pytest.mark.parametrize("name", ["1.2.3.4.example.com", "0x7f.example", "1e100.net", "123.example", "a1.b2.c3"])
def test_names_with_numbers_stay_names(name: str) -> None:
    assert normalize_hostname(name) == name.lower()


def test_wildcards_over_names_ending_in_a_digit() -> None:
    pins = pins_of(cached_chain())
    policy = PinPolicy.from_mapping({"domains": [{"host": "*.host1", "pins": pins}, {"host": "**.db2.example9", "pins": pins}]})
    assert policy.entry_for("www.host1") is not None
    assert policy.entry_for("a.b.db2.example9") is not None


def test_ip_entries_take_no_wildcard() -> None:
    pins = pins_of(cached_chain())
    for host in ("*.127.1", "**.0x7f.1", "*.2130706433"):
        with pytest.raises(PolicyError, match=r"IP address matches exactly|wildcard"):
            PinPolicy.from_mapping({"domains": [{"host": host, "pins": pins}]})
    with pytest.raises(PolicyError, match="IP address matches exactly"):
        PinPolicy.from_mapping({"domains": [{"host": "127.1", "pins": pins, "include_subdomains": True}]})


# -- the readings against the real parsers -------------------------------------------------

PROBES = [
    "127.0.0.1", "127.000.000.001", "0177.0.0.1", "127.1", "0x7f.0.0.1", "2130706433", "127.0.0.1x", "127.0.0.1.x",
    "+127.0.0.1", "127.-0.0.1", "127. 0.0.1", "1.2.3.4.nip.io", "00000000000127.0.0.1", "4294967423.0.0.1",
    "256.0.0.1", "127.0.0.256", "-1.0.0.1", "127.0.0.1\t", "0x7f.0x0.0x0.0x1", "1.2.3", "08.0.0.1", "9.9.9.9 ",
]


def _openssl_reads_an_address(hostname: str) -> bool:
    """Whether the linked OpenSSL reads ``hostname`` as an IP address: then the client sends no SNI."""
    seen: list[str | None] = []
    chain = cached_chain()
    with TLSServer(chain) as server:
        server.context.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,misc]
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname=hostname) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                tls.recv(100)
    assert len(seen) == 1
    return seen[0] is None


@pytest.mark.parametrize("hostname", PROBES)
def test_openssl_reading_matches_the_linked_openssl(hostname: str) -> None:
    from pinengine import _hostnames

    address, unsure = _hostnames._openssl_ipv4(hostname)
    assert _openssl_reads_an_address(hostname) == (address is not None or unsure), (address, unsure)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="compares with glibc's getaddrinfo")
@pytest.mark.parametrize(
    "hostname",
    PROBES + ["0000000000001", "0x0000000007f.1", "0x", "0x.1", "1.0x", "0X1", "00", "4294967295", "4294967296",
              "0xffffffff", "0x100000000", "037777777777", "040000000000", "1.16777215", "1.16777216", "1.2.65535",
              "1.2.65536", "1.2.3.256", "08", "09.1", "0.0.0.0", "1..2", ".1.2.3", "0" * 60 + "1", "0x" + "0" * 60 + "1"],
)
def test_socket_reading_matches_getaddrinfo(hostname: str) -> None:
    from pinengine import _hostnames

    try:
        expected: str | None = socket.getaddrinfo(hostname, 1, socket.AF_INET, flags=socket.AI_NUMERICHOST)[0][4][0]
    except (socket.gaierror, UnicodeError):  # UnicodeError: the idna codec refuses empty labels
        expected = None
    assert _hostnames._inet_aton(hostname) == expected


# -- bounds and cost -----------------------------------------------------------------------


def test_long_and_pathological_spellings_are_refused_quickly() -> None:
    inputs = ["1" * 100_000, "1." * 50_000 + "1", "0x" + "f" * 100_000, "0" * 100_000 + "1",
              "1." * 500 + "1", "0x" + "f" * 1000, "9" * 1000, "-" + "9" * 1000 + ".0.0.1", ":" * 1000,
              "[" + "1:" * 400 + "]"]
    for text in inputs:
        started = time.perf_counter()
        with pytest.raises(HostnameError):
            normalize_hostname(text)
        assert time.perf_counter() - started < 2.0, text[:20]
