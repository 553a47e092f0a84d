"""Attack: inputs that cost the reader far more than their size (issue 11, findings 14 and 15).

- PEM: the block regex backtracked: many ``BEGIN`` lines without ``END`` made
  each one scan to the end of the input (560 KB took 57 s).
- Policies: duplicate pins were found with list scans (an entry of 16k pins
  was still loading at 8 s).

Each costly input runs in a fresh interpreter with a generous deadline, so a
quadratic reader fails the test instead of hanging the suite; the readers
now take milliseconds for a megabyte.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import certifi
import pytest

from pinengine import CertificateParseError, Pin, PinPolicy, PolicyError, _pem, load_certificates
from pinengine._pem import read_blocks
from tests.certs import cached_chain, pem

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

ROOT = Path(__file__).resolve().parent.parent.parent

#: A linear reader takes milliseconds on these inputs; this is hundreds of times that.
GENEROUS_SECONDS = 5.0
#: Past this the interpreter is killed: a quadratic reader takes minutes.
DEADLINE_SECONDS = 60.0

MEGABYTE = 1 << 20


def seconds_taken(backend: str, setup: str, work: str) -> float:
    """Run ``setup`` then ``work`` in a fresh interpreter of the backend under test; the seconds ``work`` took."""
    script = (
        "import time\n" + textwrap.dedent(setup) + "\n_t = time.perf_counter()\n" + textwrap.dedent(work)
        + "\nprint(time.perf_counter() - _t)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if backend == "python":
        env["PINENGINE_NO_EXTENSIONS"] = "1"
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {DEADLINE_SECONDS} s: not linear")
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


def _cert_pem() -> bytes:
    return pem(cached_chain("p256").leaf)


# ---- PEM: megabyte inputs built to make a backtracking reader rescan -------------------------

PEM_ATTACKS = {
    "BEGIN lines without END": "b'-----BEGIN CERTIFICATE-----\\n' * (MB // 28)",
    "BEGINs on one line": "b'-----BEGIN CERTIFICATE-----' * (MB // 27)",
    "a good block, then BEGINs without END": "GOOD + b'-----BEGIN CERTIFICATE-----\\n' * (MB // 28)",
    "a label without closing dashes": "b'-----BEGIN ' + b'A' * MB",
    "base64 and no END": "b'-----BEGIN CERTIFICATE-----\\n' + b'QUFB\\n' * (MB // 5)",
    "BEGIN, END, BEGIN, END ... with a last BEGIN unclosed": (
        "b'-----BEGIN X-----\\nQUFB\\n-----END X-----\\n' * (MB // 38) + b'-----BEGIN X-----\\n'"
    ),
}


@pytest.mark.parametrize("attack", sorted(PEM_ATTACKS))
def test_pem_reader_is_linear(backend: str, attack: str) -> None:
    setup = f"""
        from pinengine import CertificateParseError, load_certificates
        MB = {MEGABYTE}
        GOOD = {_cert_pem()!r}
        data = {PEM_ATTACKS[attack]}
        assert len(data) >= MB - 100
        """
    work = """
        try:
            load_certificates(data)
        except CertificateParseError:
            pass
        else:
            raise SystemExit("accepted")
        try:
            load_certificates(data.decode('ascii'))
        except CertificateParseError:
            pass
        """
    assert seconds_taken(backend, setup, work) < GENEROUS_SECONDS


def test_big_honest_bundle_reads_in_linear_time(backend: str) -> None:
    setup = f"""
        from pinengine import load_certificates
        data = open({certifi.where()!r}, 'rb').read() * 4
        """
    work = "assert len(load_certificates(data)) > 400"
    assert seconds_taken(backend, setup, work) < GENEROUS_SECONDS


def test_pin_from_file_and_cli_on_a_megabyte_of_begins(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "begins.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\n" * (MEGABYTE // 28))
    setup = f"""
        import io
        from pinengine import CertificateParseError, Pin
        from pinengine.cli import main
        path = {str(path)!r}
        """
    work = """
        try:
            Pin.from_file(path)
        except CertificateParseError as exc:
            assert path in str(exc), exc
        else:
            raise SystemExit("accepted")
        assert main(["pins", path], out=io.StringIO()) == 2
        assert main(["verify", "--host", "a.example", "--pin", "sha256/" + "A" * 43 + "=", path], out=io.StringIO()) == 2
        """
    assert seconds_taken(backend, setup, work) < GENEROUS_SECONDS


# ---- PEM: what the single pass reads, and what it refuses ----------------------------------


def test_pem_reader_keeps_reading_what_it_read() -> None:
    good = _cert_pem()
    der = cached_chain("p256").ders[0]
    bundle = b"# a comment\n" + good + b"\nsome text\n" + good.replace(b"\n", b"\r\n") + b"trailing text"
    assert load_certificates(bundle) == [der, der]
    assert load_certificates(bundle.decode("ascii")) == [der, der]
    spaced = good.replace(b"-----\n", b"-----  \t\n", 1)  # trailing blanks on the BEGIN line
    assert load_certificates(spaced) == [der]
    no_newline_at_end = good.rstrip(b"\n")
    assert load_certificates(no_newline_at_end) == [der]
    key = b"-----BEGIN PUBLIC KEY-----\nQUFB\n-----END PUBLIC KEY-----\n"
    assert [b.label for b in read_blocks(key + good)] == ["PUBLIC KEY", "CERTIFICATE"]
    assert load_certificates(key + good) == [der]
    assert load_certificates(der + der) == [der, der]  # DER bundles are unchanged


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"-----BEGIN CERTIFICATE-----\nQUFB\n", r"line 1: PEM block BEGIN CERTIFICATE has no END line"),
        (b"x\n-----BEGIN CERTIFICATE-----\nQUFB\n-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----\n",
         "line 2: PEM block BEGIN CERTIFICATE has another BEGIN line before its END line"),
        (b"-----BEGIN CERTIFICATE-----\nQUFB\n-----END PUBLIC KEY-----\n", "ends with END PUBLIC KEY"),
        (b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "PEM block CERTIFICATE is empty"),
        (b"-----BEGIN CERTIFICATE----- QUFB\n-----END CERTIFICATE-----\n", "text after the dashes"),
        (b"-----BEGIN " + b"A" * 65 + b"-----\nQUFB\n-----END A-----\n", "without a label of at most 64 characters"),
        (b"-----BEGIN -----\nQUFB\n-----END -----\n", "invalid label"),
        (b"-----BEGIN CERT\x00-----\nQUFB\n-----END CERT\x00-----\n", "invalid label"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "bad base64"),
        (b"-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nQUFB\n-----END CERTIFICATE-----\n", "has headers"),
    ],
)
def test_pem_reader_refuses_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(CertificateParseError, match=why):
        load_certificates(data)


def test_labels_up_to_the_bound_are_read() -> None:
    assert _pem.MAX_LABEL_LENGTH == 64  # the refusal above is one past it
    label = "A" * _pem.MAX_LABEL_LENGTH
    blocks = read_blocks(f"-----BEGIN {label}-----\nQUFB\n-----END {label}-----\n")
    assert blocks[0].label == label and blocks[0].der == b"AAA"


def test_text_that_utf8_cannot_carry_is_a_parse_error_not_a_crash() -> None:
    good = _cert_pem().decode("ascii")
    der = cached_chain("p256").ders[0]
    assert load_certificates("\ud800 comment\n" + good) == [der]
    with pytest.raises(CertificateParseError):
        load_certificates(good.replace("\n", "\ud800\n", 3))


# ---- policies: pins by the ten thousand ----------------------------------------------------

PINS = 20_000


def _pins(n: int) -> list[str]:
    return [str(Pin("sha256", i.to_bytes(32, "big"))) for i in range(n)]


@pytest.mark.parametrize("form", ["toml", "json"])
def test_an_entry_of_twenty_thousand_pins_loads_in_linear_time(backend: str, tmp_path: Path, form: str) -> None:
    pins = _pins(PINS)
    if form == "json":
        text = json.dumps({"domains": [{"host": "a.example", "pins": pins, "blocked_pins": pins[:1]}],
                           "blocked_pins": pins[-1:]})
    else:
        text = "[[domains]]\nhost = \"a.example\"\npins = [\n" + "".join(f'  "{p}",\n' for p in pins) + "]\n"
    path = tmp_path / f"policy.{form}"
    path.write_text(text)
    setup = """
        from pinengine import PinPolicy
        from tests.certs import cached_chain
        chain = cached_chain('p256').ders
        """
    work = f"""
        policy = PinPolicy.from_file({str(path)!r})
        assert len(policy.entries[0].pins) == {PINS}
        try:
            policy.verify('a.example', chain)
        except Exception as exc:
            assert type(exc).__name__ == 'PinMismatchError', exc
        """
    assert seconds_taken(backend, setup, work) < GENEROUS_SECONDS


def test_a_duplicate_among_twenty_thousand_pins_is_found_in_linear_time(backend: str, tmp_path: Path) -> None:
    pins = _pins(PINS)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"domains": [{"host": "a.example", "pins": [*pins, pins[0]]}]}))
    work = f"""
        from pinengine import PinPolicy, PolicyError
        try:
            PinPolicy.from_file({str(path)!r})
        except PolicyError as exc:
            assert "pins[{PINS}]" in str(exc) and "listed twice" in str(exc), exc
        else:
            raise SystemExit("accepted")
        """
    assert seconds_taken(backend, "", work) < GENEROUS_SECONDS


def test_many_blocked_pins_in_an_entry_and_the_policy(backend: str, tmp_path: Path) -> None:
    """The blocked keys that apply to an entry are merged when it is first used (in the handshake)."""
    blocked = _pins(2 * PINS)
    chain = cached_chain("p256")
    pins = [str(Pin.from_certificate(d)) for d in chain.ders[:2]]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"blocked_pins": blocked[PINS:],
                                "domains": [{"host": "a.example", "pins": pins, "blocked_pins": blocked[:PINS]}]}))
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(b"".join(pem(c) for c in chain.certs))
    setup = f"""
        from pinengine import PinPolicy, load_certificates
        chain = load_certificates(open({str(chain_file)!r}, 'rb').read())
        """
    work = f"""
        policy = PinPolicy.from_file({str(path)!r})
        assert policy.verify('a.example', chain).status == 'match'
        """
    assert seconds_taken(backend, setup, work) < GENEROUS_SECONDS


def test_duplicate_pins_are_still_refused_in_every_spelling() -> None:
    der = cached_chain("p256").ders[0]
    pin = Pin.from_certificate(der)
    b64 = base64.b64encode(pin.digest).decode()
    for twin in (f'pin-sha256="{b64}"', pin.digest.hex(), f"sha256//{b64}", f"  {pin}  "):
        with pytest.raises(PolicyError, match=r"pins\[1\]: .* is listed twice"):
            PinPolicy.from_mapping({"domains": [{"host": "a.example", "pins": [str(pin), twin]}]})
    # A certificate pin on the same digest is another pin.
    other = f"cert-sha256/{b64}"
    PinPolicy.from_mapping({"domains": [{"host": "a.example", "pins": [str(pin), other]}]})



# A message quotes what it refuses, and must not grow with it: an 8 MiB value makes an 8 MiB error
# (in every log line that prints it) unless the quote is cut short.
_BIG = "A" * (8 << 20)
_TWO_PINS = ["sha256/" + "A" * 43 + "=", "sha256/" + "B" * 43 + "="]
REFUSED_HUGE = {
    "unknown top-level key": lambda: PinPolicy.from_mapping({_BIG: 1, "domains": []}),
    "unknown entry key": lambda: PinPolicy.from_mapping({"domains": [{"host": "a.test", _BIG: 1}]}),
    "pin text": lambda: Pin.parse(_BIG),
    "pin base64": lambda: Pin.parse("sha256/" + _BIG),
    "pin in a policy": lambda: PinPolicy.from_mapping({"domains": [{"host": "a.test", "pins": [_BIG]}]}),
    "host": lambda: PinPolicy.from_mapping({"domains": [{"host": _BIG, "pins": _TWO_PINS}]}),
    "mode": lambda: PinPolicy.from_mapping({"domains": [{"host": "a.test", "pins": _TWO_PINS, "mode": _BIG}]}),
    "pin list": lambda: Pin.parse_list(_BIG),
}


@pytest.mark.parametrize("case", list(REFUSED_HUGE))
def test_an_error_quotes_a_huge_value_cut_short(case: str) -> None:
    with pytest.raises((PolicyError, ValueError)) as info:
        REFUSED_HUGE[case]()
    assert len(str(info.value)) < 1024, len(str(info.value))
