"""docs/lifecycle.md runs as written: every ``sh`` block, in order, in one bash, against a loopback HTTPS server.

The page's two settings are the only lines changed: ``HOST`` becomes the
server (``localhost:PORT``) and ``COLLECTOR_PORT`` a free port. The system
trust store is the server's root (``SSL_CERT_FILE``), so ``pinengine init``,
``verify``, ``check --host`` and the page's client validate the chain as they
would a public server's. ``pinengine`` and ``python3`` are this interpreter's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pinengine import Pin
from tests.certs import make_chain
from tests.tls import TLSServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "lifecycle.md"
HOST_LINE = "HOST=api.example.com        # your server; HOST:PORT when it is not on 443"
PORT_LINE = "COLLECTOR_PORT=8514         # where the local report collector of step 3 listens"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the page's commands use the openssl command")
def test_the_lifecycle_walkthrough_runs_against_a_live_server(tmp_path: Path) -> None:
    blocks = sh_blocks(PAGE.read_text())
    assert len(blocks) >= 8, "the page lost its commands"
    assert blocks[0].splitlines() == [HOST_LINE, PORT_LINE]
    chain = make_chain("p256", "localhost")
    port = free_port()
    with TLSServer(chain) as server:
        script = "\n".join(
            ["set -euo pipefail", f"HOST=localhost:{server.port}", f"COLLECTOR_PORT={port}", *blocks[1:]]
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PINENGINE_", "PYTHON"))}
        if "PINENGINE_NO_EXTENSIONS" in os.environ:  # the run's backend, for the page's commands too
            env["PINENGINE_NO_EXTENSIONS"] = os.environ["PINENGINE_NO_EXTENSIONS"]
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["SSL_CERT_FILE"] = server.cafile
        proc = subprocess.Popen(
            ["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=120)
        finally:  # the page's collector, if the script died before its kill
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert proc.returncode == 0, out
        handshakes = server.connections

    ca_pin = str(Pin.from_certificate(chain.ders[1]))
    # 1. The backup pin, from the CSR and from the key: one pin, each input named.
    csr_line = next(line for line in out.splitlines() if line.startswith("next.csr[0] "))
    key_line = next(line for line in out.splitlines() if line.startswith("next-key.pem[0] "))
    assert "certificate request (PKCS#10)" in csr_line and "private key" in key_line
    backup = csr_line.split()[1]
    assert key_line.split()[1] == backup and backup != ca_pin
    # 2. init wrote a report-only entry: the issuing CA's key and the backup.
    # 4. ... then switched to enforce, with the collector's report_uri added in 3.
    policy = tomllib.loads((tmp_path / "pins.toml").read_text())
    assert policy["domains"] == [{"host": "localhost", "pins": [ca_pin, backup], "mode": "enforce",
                                  "report_uri": f"http://127.0.0.1:{port}/pins"}]
    assert (tmp_path / "pins.toml.bak").read_text().count('mode = "report-only"') == 1
    # The client reached the server under each policy that allowed it (pins, drill, enforced pins).
    assert out.count("app: 200") == 3
    # 3. The collector got the drill's report (report-only), then the enforced drill's refusal.
    reports = [json.loads(line) for line in (tmp_path / "reports.jsonl").read_text().splitlines()]
    assert [r["pinengine"]["status"] for r in reports] == ["report-only", "mismatch"]
    for report in reports:
        assert report["hostname"] == "localhost"
        assert report["pinengine"]["served-chain-pins"][1] == ca_pin
        assert f'pin-sha256="{backup.split("/", 1)[1]}"' in report["known-pins"]
    assert out.count("report: localhost report-only served:") == 1
    assert out.count("report: localhost mismatch served:") == 1
    assert "not refused?" not in out
    assert out.count("app: refused: Certificate pinning failure for localhost!") == 1
    assert "Traceback" not in out
    # 5. The next policy: the CA's key, the new backup and the one now in use, enforced.
    nxt = tomllib.loads((tmp_path / "pins-next.toml").read_text())
    (entry,) = nxt["domains"]
    assert entry["pins"][0] == ca_pin and backup in entry["pins"][1:] and len(entry["pins"]) == 3
    assert entry["mode"] == "enforce"
    assert handshakes >= 9
