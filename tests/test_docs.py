"""Every fenced python example of README.md and docs/*.md runs as written; every TOML example loads.

Examples that talk to a server name ``api.example.com`` (HTTPS) or
``grpc.example.com`` (gRPC) and read ``pins.toml``. Each runs in a fresh
directory holding that ``pins.toml`` (pinning the test servers' intermediate
key) and ``examples/``, with those names resolved to local servers and the
servers' root as the trust store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH). A page or heading that goes missing fails
here; nothing is skipped.
"""

from __future__ import annotations

import re
import socket
import sys
from concurrent import futures
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from pinengine import Pin, PinPolicy
from tests.certs import Chain, key_pem, make_chain, pem
from tests.tls import TLSServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
#: Comments in an example that promise what it prints: each must appear in its output.
_PROMISE = re.compile(r"#\s*(b'hello'|200|match|True)\b")

#: Pages that must exist, and the headings each must keep with at least one python example under it.
EXPECTED: dict[str, list[str]] = {
    "README.md": ["Quick start", "ssl: http.client, urllib, asyncio", "requests", "urllib3", "httpx", "aiohttp",
                  "gRPC"],
    "docs/pins.md": ["Parsing and formatting", "Pins from certificates and keys"],
    "docs/policy-files.md": ["Policy files"],
    "docs/verification.md": ["Verification", "Many chains at once"],
    "docs/hooks.md": ["ssl, http.client, urllib, asyncio, httpx, aiohttp", "requests and urllib3"],
    "docs/grpc.md": ["gRPC channels", "Runnable example"],
    "docs/dynamic-pins.md": ["Dynamic pins: trust on first use, kept in a store"],
    "docs/hpkp.md": ["HPKP: pins noted from `Public-Key-Pins` headers (RFC 7469)"],
    "docs/reporting.md": ["Rolling pinning out safely: report-only, reports, metrics, rotations", "Metrics"],
    "docs/cli.md": [],
    "docs/backends.md": ["Backends"],
    "docs/security.md": [],
    "docs/performance.md": [],
    "docs/edge-devices.md": [],
}
#: Headings (any level) each page must keep, examples or not.
EXPECTED_SECTIONS: dict[str, list[str]] = {
    "README.md": ["Which hook do I use", "Security in one screen", "Documentation", "Layout"],
    "docs/security.md": ["Which chain counts", "Blocked keys", "No byte before the decision", "Host names",
                         "Proxies and pools", "gRPC relay", "Reports: what leaves the process, and to where",
                         "Store outages", "Bounded inputs", "Fail closed"],
    "docs/grpc.md": ["How it is enforced", "Limits"],
    "docs/reporting.md": ["Violation reports", "Where reports go", "Delivery", "Rotation planning"],
    "docs/cli.md": ["Examples"],
}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_HEADING = re.compile(r"^(#{1,6}) (.*)$", re.MULTILINE)


def blocks(page: str, language: str) -> list[tuple[str, int, str]]:
    """(heading, line, code) of every fenced block of ``language`` in ``page``."""
    text = (ROOT / page).read_text()
    headings = [(m.start(), m.group(2).strip()) for m in _HEADING.finditer(text)]
    found = []
    for m in _FENCE.finditer(text):
        if m.group(1) != language:
            continue
        # a heading inside an earlier fenced block (a shell comment) is not a heading: skip fenced text
        under = ""
        for pos, title in headings:
            if pos < m.start() and not _inside_fence(text, pos):
                under = title
        found.append((under, text.count("\n", 0, m.start()) + 1, m.group(2)))
    return found


def _inside_fence(text: str, pos: int) -> bool:
    return any(m.start() < pos < m.end() for m in _FENCE.finditer(text))


def _headings(page: str) -> set[str]:
    text = (ROOT / page).read_text()
    return {m.group(2).strip() for m in _HEADING.finditer(text) if not _inside_fence(text, m.start())}


EXAMPLES = [(page, heading, line, code) for page in PAGES for heading, line, code in blocks(page, "python")]


# -- the servers the examples talk to ----------------------------------------------------------------

NAMES = ("api.example.com", "grpc.example.com")


@pytest.fixture(scope="module")
def chain() -> Chain:
    return make_chain("p256", NAMES[0], extra_sans=NAMES[1:])


@pytest.fixture(scope="module")
def https_server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as server:
        yield server


@pytest.fixture(scope="module")
def grpc_port(chain: Chain) -> Iterator[int]:
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("demo.Echo", {"Echo": echo})])
    credentials = grpc.ssl_server_credentials([(key_pem(chain.leaf_key), pem(chain.leaf) + pem(chain.intermediate))])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port
    server.stop(None).wait(10)


@pytest.fixture
def sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chain: Chain, https_server: TLSServer, grpc_port: int
) -> Path:
    """A working directory with pins.toml, ca.pem and examples/; the example names resolve to the servers."""
    backup = str(Pin.from_certificate(make_chain("p256", NAMES[0]).ders[1]))
    (tmp_path / "pins.toml").write_text(
        f'[[domains]]\nhost = "**.example.com"\npins = ["{Pin.from_certificate(chain.ders[1])}", "{backup}"]\n'
    )
    (tmp_path / "ca.pem").write_bytes(pem(chain.root))
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"):
        monkeypatch.setenv(variable, str(tmp_path / "ca.pem"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the default SQLite store, if one is made
    for variable in ("CURL_CA_BUNDLE", "SSL_CERT_DIR", "grpc_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY",
                     "HTTP_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    ports = {NAMES[0]: https_server.port, NAMES[1]: grpc_port}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in ports:
            kind = type or socket.SOCK_STREAM
            return [(socket.AF_INET, kind, proto or socket.IPPROTO_TCP, "", ("127.0.0.1", ports[name]))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the tests ---------------------------------------------------------------------------------------


def test_every_page_is_there_with_its_examples() -> None:
    for page, headings in EXPECTED.items():
        assert (ROOT / page).is_file(), f"{page} is missing"
        with_examples = {heading for heading, _, _ in blocks(page, "python")}
        for heading in headings:
            assert heading in with_examples, f"{page}: no python example under the heading {heading!r}"
    for page, headings in EXPECTED_SECTIONS.items():
        present = _headings(page)
        for heading in headings:
            assert heading in present, f"{page}: the heading {heading!r} is missing"
    assert len(EXAMPLES) >= 20, len(EXAMPLES)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"({page})" in readme, f"README.md does not link {page}"


@pytest.mark.parametrize(("page", "heading", "line", "code"), EXAMPLES, ids=[f"{p}:{n}" for p, _, n, _ in EXAMPLES])
def test_example_runs(
    page: str, heading: str, line: int, code: str, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(compile(code, f"{page}:{line}", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    for expected in _PROMISE.findall(code):
        assert expected in out, f"{page}:{line} printed {out!r}, its comment promises {expected}"


@pytest.mark.parametrize("page", PAGES)
def test_toml_examples_load(page: str) -> None:
    for _, line, code in blocks(page, "toml"):
        PinPolicy.from_mapping(tomllib.loads(code), source=f"{page}:{line}")


def test_the_quick_start_per_client_reaches_the_server(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = {heading: code for heading, _, code in blocks("README.md", "python")}
    exec(compile(readme["requests"], "README.md", "exec"), {})
    exec(compile(readme["gRPC"], "README.md", "exec"), {})
    assert capsys.readouterr().out == "200\nb'hello'\nmatch\n"


@pytest.mark.parametrize("page", PAGES)
def test_links_between_pages_lead_somewhere(page: str) -> None:
    """Links from one page to another (README.md, docs/*.md) name a page that exists, and a heading it has.

    (The copies of the tree that CI tests wheels in hold README.md, docs/ and tests/, not ext/ or benchmarks/:
    links there are not checked.)
    """
    text = (ROOT / page).read_text()
    for target, anchor in re.findall(r"\]\(([^)#:]*\.md|)(?:#([^)]*))?\)", text):
        path = ((ROOT / page).parent / target).resolve() if target else ROOT / page
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        if path.parent != ROOT / "docs" and path != ROOT / "README.md":
            continue
        assert name in PAGES, f"{page}: the link {target!r} leads to no page"
        if anchor:
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in _headings(name)}
            assert anchor in slugs, f"{page}: the link {target}#{anchor} names no heading of {name}"


def test_the_httpsink_signature_is_the_real_one() -> None:
    import inspect

    from pinengine.reporting import HTTPSink

    text = " ".join((ROOT / "docs" / "reporting.md").read_text().split())
    documented = re.search(r"`HTTPSink\((.*?)\)`", text)
    assert documented, "docs/reporting.md does not show HTTPSink's signature"
    names = [p.strip().split("=")[0] for p in documented.group(1).split(",") if p.strip() not in ("*", "")]
    assert names == list(inspect.signature(HTTPSink).parameters), documented.group(1)
    for parameter in inspect.signature(HTTPSink).parameters.values():
        if parameter.default is not inspect.Parameter.empty and isinstance(parameter.default, (int, float, bool)):
            shown = re.search(rf"\b{parameter.name}=([\w.]+)", documented.group(1))
            assert shown and eval(shown.group(1)) == parameter.default, parameter.name


def test_the_command_synopsis_names_every_command() -> None:
    from pinengine.cli import _parser

    synopsis = re.search(r"```\n(pinengine --version.*?)```", (ROOT / "docs" / "cli.md").read_text(), re.DOTALL)
    assert synopsis, "docs/cli.md has no command synopsis"
    commands = next(a for a in _parser()._actions if a.choices and isinstance(a.choices, dict)).choices
    for command in commands:
        assert f"pinengine {command} " in synopsis.group(1), f"the synopsis lacks `pinengine {command}`"


def test_the_security_model_cites_every_attack_module() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    cited = set(re.findall(r"`(test_\w+)`", text))
    modules = {p.stem for p in (ROOT / "tests" / "security").glob("test_*.py")}
    assert cited - modules == set(), f"docs/security.md cites modules that do not exist: {cited - modules}"
    assert modules - cited == set(), f"docs/security.md does not say what these attack modules test: {modules - cited}"


def test_the_layout_names_every_module() -> None:
    text = (ROOT / "README.md").read_text()
    layout = re.search(r"^## Layout\n+```\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert layout, "README.md has no fenced block under '## Layout'"
    source = ROOT / "src" / "pinengine"
    for path in sorted(source.rglob("*")):
        if path.suffix in (".py", ".pyx", ".pyi") and path.name != "__init__.py":
            assert re.search(rf"(^|[\s,]){re.escape(path.name)}\b", layout.group(1)), (
                f"the README's layout does not say what {path.relative_to(source)} is for"
            )
