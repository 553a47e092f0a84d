"""Smoke test of benchmarks/bench_decision_path.py (issue 13's table): it runs and prints its rows.

The script runs in a subprocess, on whichever core the suite uses (the
environment is passed on, PINENGINE_NO_EXTENSIONS included), with --quick
and two cheap rows. No timing is asserted: only that the rows are there,
with a figure and a verdict, in the table and in the JSON file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_decision_path.py"
VERDICTS = {"met", "missed", "not measured"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_quick_run_prints_the_rows_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _run("--quick", "--rounds", "1", "--rows", "2,6", "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "| row | what | measured | goal | verdict |" in lines
    rows = [line for line in lines if line.startswith("| 2 |") or line.startswith("| 6 |")]
    assert [r[:5] for r in rows] == ["| 2 |", "| 6 |"], done.stdout
    assert "policy.verify" in rows[0] and "from_mapping" in rows[1]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5 and cells[2] and cells[4] in VERDICTS, row
    assert not any(line.startswith(f"| {n} |") for line in lines for n in (1, 3, 4, 5, 7, 8))
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and saved["rounds"] == 1
    assert [r["row"] for r in saved["rows"]] == [2, 6]
    assert all(r["verdict"] in VERDICTS for r in saved["rows"])
    assert len(saved["rows"][0]["ratio"]) == 4 and all(x > 0 for x in saved["rows"][0]["ratio"])
    assert saved["machine"]["backend"] in ("compiled", "python")


def test_unknown_row_is_refused() -> None:
    done = _run("--rows", "2,9")
    assert done.returncode == 2
    assert "--rows" in done.stderr and "1-8" in done.stderr
