"""The README's examples run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_quick_start_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n.*?```python\n(.*?)```", text, re.DOTALL)
    assert block, "README has no quick start block"
    monkeypatch.chdir(ROOT)
    exec(compile(block.group(1), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("match\nintermediate sha256/")
    assert "Certificate pinning failure for www.example.com!" in out


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", text, re.DOTALL)
    assert "pinengine pins" in commands[0] and "pinengine verify" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run runs the README's test command (after its own venv set-up, in
    # a directory of its own: $VENV, so it never deletes the reader's .venv)
    assert commands[1].startswith("bash .ci/programs && ") and "bash .ci/programs\n" in ci
    test_cmd = commands[1][commands[1].index(".venv/bin/python -m pytest") :]
    assert test_cmd.replace(".venv/bin/", "$VENV/bin/") in ci, test_cmd
    assert "VENV=.ci/.venv" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
