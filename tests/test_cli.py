"""The `pinengine` command: pins, check, verify, exit codes."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import certifi
import pytest
from cryptography.hazmat.primitives import serialization

from pinengine import Pin, cert_sha256, spki_sha256
from pinengine.cli import main
from tests.certs import Chain, cached_chain, certifi_ders, make_chain
from tests.security.webpki_chain import hierarchy, write_pem


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("rsa2048")


@pytest.fixture
def chain_file(tmp_path: Path, chain: Chain) -> Path:
    path = tmp_path / "chain.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain.certs))
    return path


def write_policy(tmp_path: Path, body: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_pins_json_over_certifi() -> None:
    code, out = run("pins", "--format", "json", certifi.where())
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    ders = certifi_ders()
    assert len(records) == len(ders)
    import base64

    for record, der in zip(records, ders):
        assert record["file"] == certifi.where()
        assert record["spki_sha256"] == base64.b64encode(spki_sha256(der)).decode()
        assert record["cert_sha256"] == base64.b64encode(cert_sha256(der)).decode()
        assert record["pin"] == "sha256/" + record["spki_sha256"]
        for key in ("index", "subject", "issuer", "not_before", "not_after"):
            assert key in record
    assert [r["index"] for r in records] == list(range(len(ders)))


def test_pins_text(chain_file: Path, chain: Chain) -> None:
    code, out = run("pins", str(chain_file))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    for i, (line, der) in enumerate(zip(lines, chain.ders)):
        assert line.startswith(f"{chain_file}[{i}] {Pin.from_certificate(der)} ")
        assert str(Pin.from_certificate(der, kind="certificate")) in line
    assert 'subject="CN=example.com,O=pinengine tests" issuer="CN=pinengine test intermediate' in lines[0]


def test_pins_bad_file_exit_2(tmp_path: Path, chain_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.der"
    bad.write_bytes(cached_chain("p256").ders[0][:-5])
    code, out = run("pins", str(chain_file), str(bad), str(tmp_path / "missing.pem"))
    assert code == 2
    assert len(out.splitlines()) == 3  # the good file is still printed
    err = capsys.readouterr().err
    assert "bad.der" in err and "missing.pem" in err


def test_verify_offline_match_and_mismatch(tmp_path: Path, chain: Chain, chain_file: Path) -> None:
    good = write_policy(
        tmp_path,
        f'[[domains]]\nhost = "**.example.com"\npins = ["{Pin.from_certificate(chain.ders[1])}", '
        f'"{Pin.from_certificate(make_chain().ders[0])}"]\n',
    )
    # An unvalidated chain file: only its leaf can match a pin (it used to match the
    # intermediate, whatever the file's author appended: issue 11, finding 6).
    code, out = run("verify", "--policy", str(good), "--host", "www.example.com", str(chain_file))
    assert code == 1, out
    assert "chain: NOT validated (offline, no --cafile): only the leaf can match a pin" in out
    assert "decision: REFUSED" in out
    code, out = run("verify", "--pin", str(Pin.from_certificate(chain.ders[0])), "--host", "example.com", str(chain_file))
    assert code == 0 and "certificate 0 (leaf)" in out, out
    code, out = run("verify", "--policy", str(good), "--host", "unpinned.org", str(chain_file))
    assert code == 0 and "not pinned" in out
    code, out = run(
        "verify", "--policy", str(good), "--host", "www.example.com", "--unverified", str(chain_file)
    )
    assert code == 1 and "REFUSED" in out
    code, out = run("verify", "--pin", str(Pin.from_certificate(make_chain().ders[0])), "--host", "example.com", str(chain_file))
    assert code == 1
    assert str(Pin.from_certificate(chain.ders[0])) in out


def test_verify_offline_with_cafile_checks_the_validated_chain(tmp_path: Path) -> None:
    # --cafile validates the file with cryptography's verifier (>= 42, the
    # cryptography extra); systems with an older one (Debian 12's, on the
    # emulated armv7 run) refuse --cafile with a message naming the extra.
    pytest.importorskip("cryptography.x509.verification")
    pki = hierarchy("www.example.com")
    roots = write_pem(tmp_path / "roots.pem", pki.root)
    validated = write_pem(tmp_path / "validated.pem", pki.leaf, pki.intermediate)
    code, out = run("verify", "--pin", pki.pin(pki.intermediate), "--host", "www.example.com", "--cafile", str(roots),
                    str(validated))
    assert code == 0, out
    assert f"chain: validated against {roots} for www.example.com" in out
    assert "decision: accepted" in out and "certificate 1 (intermediate)" in out


def test_verify_bad_inputs(tmp_path: Path, chain_file: Path) -> None:
    assert run("verify", "--host", "a.com", str(chain_file))[0] == 2
    assert run("verify", "--pin", "sha256/nope", "--host", "a.com", str(chain_file))[0] == 2
    broken = write_policy(tmp_path, "domains = 5")
    assert run("verify", "--policy", str(broken), "--host", "a.com", str(chain_file))[0] == 2
    assert run("verify", "--pin", str(Pin.from_certificate(cached_chain("p256").ders[0])), "--host", "a.com",
               str(tmp_path / "nope.pem"))[0] == 2


def test_check_clean_policy(tmp_path: Path, chain: Chain) -> None:
    path = write_policy(
        tmp_path,
        f'[[domains]]\nhost = "example.com"\npins = ["{Pin.from_certificate(chain.ders[0])}", '
        f'"{Pin.from_certificate(chain.ders[1])}"]\n',
    )
    code, out = run("check", str(path))
    assert code == 0, out
    assert "0 errors, 0 warnings" in out


def test_check_findings(tmp_path: Path, chain: Chain) -> None:
    p0, p1, p2 = (str(Pin.from_certificate(d)) for d in chain.ders)
    soon = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    many = ", ".join(f'"{Pin.from_certificate(make_chain("p256").ders[0])}"' for _ in range(11))
    path = write_policy(
        tmp_path,
        f"""
allow_sha1 = true
blocked_pins = ["{p2}"]

[[domains]]
host = "single.example"
pins = ["{p0}"]
require_backup_pin = false

[[domains]]
host = "old.example"
pins = ["{p0}", "{p1}"]
expires = 2020-01-01

[[domains]]
host = "soon.example"
pins = ["{p0}", "{p1}"]
expires = {soon}

[[domains]]
host = "legacy.example"
pins = ["sha1/{'A' * 27}=", "{p1}"]

[[domains]]
host = "bad_name.example"
pins = ["{p0}", "{p1}"]

[[domains]]
host = "**.example"
pins = ["{p0}", "{p1}"]

[[domains]]
host = "many.example"
pins = [{many}]

[[domains]]
host = "blocked.example"
pins = ["{p0}", "{p2}"]
""",
    )
    with pytest.warns(UserWarning):
        code, out = run("check", str(path))
    assert code == 1
    for fragment in [
        "entry 'single.example': only one pin",
        "entry 'old.example': expired on 2020-01-02",
        "entry 'soon.example': expires on",
        "entry 'legacy.example': SHA-1 pin",
        "entry 'bad_name.example': can never match",
        "entry '**.example': covers every name under the top-level domain",
        "entry 'many.example': 11 pins",
        "is both pinned and blocked",
        "entries 'single.example' and '**.example' overlap",
    ]:
        assert fragment in out, fragment


def test_check_warnings_only_and_strict(tmp_path: Path, chain: Chain) -> None:
    path = write_policy(
        tmp_path,
        f'[[domains]]\nhost = "example.com"\npins = ["{Pin.from_certificate(chain.ders[0])}"]\n'
        "require_backup_pin = false\n",
    )
    assert run("check", str(path))[0] == 0
    assert run("check", "--strict", str(path))[0] == 1


def test_check_broken_policy(tmp_path: Path) -> None:
    path = write_policy(tmp_path, '{"domains": [{"host": "a.com"}]}', "p.json")
    code, out = run("check", str(path))
    assert code == 1
    assert "p.json" in out and "missing 'pins'" in out


def test_no_command_and_bad_usage() -> None:
    assert run()[0] == 2
    with pytest.raises(SystemExit) as info:
        run("pins")
    assert info.value.code == 2


# The console script of the environment running the tests (not whatever is first on PATH).
_SCRIPT = shutil.which("pinengine", path=sysconfig.get_path("scripts"))


@pytest.mark.skipif(_SCRIPT is None, reason="console script not installed in this environment")
def test_console_script_version(backend: str) -> None:
    env = dict(os.environ)
    if backend == "python":
        env["PINENGINE_NO_EXTENSIONS"] = "1"
    assert _SCRIPT is not None
    out = subprocess.run([_SCRIPT, "--version"], capture_output=True, text=True, env=env, check=True)
    import pinengine

    assert out.stdout.strip() == f"pinengine {pinengine.__version__} ({backend} backend)"


def test_module_help_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "pinengine.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Exit codes" in out.stdout


def test_a_closed_pipe_ends_quietly() -> None:
    # `pinengine pins --format json BUNDLE | head -1`: the reader closes the pipe
    # after one line. The bundle is given five times so the output outgrows
    # the pipe's buffer and the writer really meets EPIPE.
    argv = [sys.executable, "-c", "import sys; from pinengine.cli import main; sys.exit(main())",
            "pins", "--format", "json", *[certifi.where()] * 5]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert json.loads(first)["file"] == certifi.where()
    assert err == b""


def test_verify_takes_a_url_and_a_curl_pin_list(tmp_path: Path) -> None:
    from tests.tls import TLSServer

    chain = make_chain("p256", "localhost")
    other = str(Pin.from_certificate(make_chain().ders[0]))
    pins = f"{other};sha256//{str(Pin.from_certificate(chain.ders[1])).split('/', 1)[1]}"
    # By address, with --sni for the name: the emulated edge systems have no
    # /etc/hosts entry for localhost.
    with TLSServer(chain) as server:
        code, out = run("verify", "--pin", pins, "--cafile", server.cafile, "--sni", "localhost",
                        f"https://127.0.0.1:{server.port}/a?b")
        assert code == 0, out
        assert out.startswith(f"host: localhost (127.0.0.1 port {server.port}")
        code, out = run("verify", "--pin", other, "--cafile", server.cafile, "--sni", "localhost",
                        f"https://127.0.0.1:{server.port}/")
        assert code == 1, out


@pytest.mark.parametrize("target", ["http://localhost/", "https://user@localhost/", "https://localhost:0/",
                                    "https://localhost:70000/", "ftp://localhost/"])
def test_verify_refuses_other_urls(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("verify", "--pin", str(Pin.from_certificate(make_chain().ders[0])), target)[0] == 2
    assert target in capsys.readouterr().err


def test_a_chain_file_without_host_hints_at_host(chain_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("verify", "--pin", str(Pin.from_certificate(make_chain().ders[0])), str(chain_file))[0] == 2
    assert "--host HOST" in capsys.readouterr().err


def test_pin_lists() -> None:
    a, b = (Pin.from_certificate(make_chain().ders[0]) for _ in range(2))
    assert Pin.parse_list(f"{a};{b}") == [a, b]
    assert Pin.parse_list(f"sha256//{str(a)[7:]}") == [a]
    from pinengine._errors import PinFormatError

    for bad, why in [(f"{a};", "item 1 is empty"), (f"{a};{a}", "listed twice"), (";".join([str(a)] * 70), "at most"),
                     (f"{a};sha256/nope", "invalid pin")]:
        with pytest.raises(PinFormatError, match=why):
            Pin.parse_list(bad)


def test_verify_and_check_as_json(tmp_path: Path, chain: Chain, chain_file: Path) -> None:
    leaf_pin = str(Pin.from_certificate(chain.ders[0]))
    code, out = run("verify", "--format", "json", "--pin", leaf_pin, "--host", "example.com", str(chain_file))
    doc = json.loads(out)
    assert code == 0 and out.count("\n") == 1
    assert (doc["host"], doc["validated"], doc["decision"], doc["status"]) == ("example.com", False, "accepted", "match")
    assert doc["match"] == {"pin": leaf_pin, "index": 0, "role": "leaf"}
    assert [row["pin"] for row in doc["chains"]["file"]] == [str(Pin.from_certificate(d)) for d in chain.ders]
    other = str(Pin.from_certificate(make_chain().ders[0]))
    code, out = run("verify", "--format", "json", "--pin", other, "--host", "example.com", str(chain_file))
    doc = json.loads(out)
    assert code == 1 and (doc["decision"], doc["status"]) == ("refused", "mismatch") and other in doc["message"]

    body = f'[[domains]]\nhost = "example.com"\npins = ["{leaf_pin}"]\n'
    policy = write_policy(tmp_path, body + "require_backup_pin = false\n")
    code, out = run("check", "--format", "json", str(policy), "--chain", str(chain_file))
    doc = json.loads(out)
    assert code == 0 and (doc["entries"], doc["chains"], doc["errors"], doc["unreachable"]) == (1, 1, 0, 0)
    assert doc["warnings"] == len(doc["findings"]) >= 1
    assert all(f["severity"] == "warning" for f in doc["findings"])
    code, out = run("check", "--format", "json", str(write_policy(tmp_path, body, "strict.toml")))
    doc = json.loads(out)  # a policy that does not load is one error finding
    assert code == 1 and doc["errors"] == 1 and "backup" in doc["findings"][0]["message"]


def test_overlap_detection_agrees_with_all_pairs() -> None:
    # The indexed search must find exactly the pairs the all-pairs definition
    # finds, in the same order, over patterns of every kind, nested names and
    # a name with two IDNA spellings.
    import random

    from pinengine import PinPolicy
    from pinengine.cli import _more_specific, _overlaps

    rng = random.Random(7)
    labels = ["a", "b", "api", "strasse", "c"]
    hosts: set[str] = set()
    while len(hosts) < 300:
        name = ".".join(rng.choice(labels) for _ in range(rng.randint(1, 4))) + ".example"
        hosts.add(rng.choice(["", "*.", "**."]) + name)
    hosts.update(["straße.example", "*.straße.example", "**.example"])
    pins = [str(Pin.from_certificate(cached_chain("p256").ders[i])) for i in range(2)]
    policy = PinPolicy.from_mapping({"domains": [{"host": h, "pins": pins} for h in sorted(hosts)]})
    entries = policy.entries
    expected = []
    for a in entries:
        for b in entries:
            probe = a.base if a.pattern != "one-label" else "x." + a.base
            if a is not b and b.covers(probe) and _more_specific(a, b):
                expected.append((a.host, b.host))
    assert len(expected) > 100
    assert [(a.host, b.host) for a, b in _overlaps(entries)] == expected


def test_verify_labels_root_only_a_self_issued_certificate(tmp_path: Path) -> None:
    # A served chain ends with an intermediate (servers do not send their root): labelled as such.
    from tests.certs import cached_chain, pem

    chain = cached_chain("p256", "www.example.com")
    served = tmp_path / "served.pem"
    served.write_bytes(pem(chain.leaf) + pem(chain.intermediate))
    code, out = run("verify", "--pin", str(Pin.from_certificate(chain.ders[0])), "--host", "www.example.com",
                    "--insecure", str(served))
    assert code == 0, out
    assert "  1 intermediate: " in out and " root: " not in out, out
    whole = tmp_path / "whole.pem"
    whole.write_bytes(pem(chain.leaf) + pem(chain.intermediate) + pem(chain.root))
    code, out = run("verify", "--pin", str(Pin.from_certificate(chain.ders[0])), "--host", "www.example.com",
                    "--insecure", str(whole))
    assert code == 0 and "  2 root: " in out, out
