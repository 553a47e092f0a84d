"""`pinengine store ...` against real store files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pinengine import Pin
from pinengine.cli import main
from pinengine.stores import SQLiteStore, open_store
from tests.certs import cached_chain

A = str(Pin.from_certificate(cached_chain("p256").ders[0]))
B = str(Pin.from_certificate(cached_chain("p256").ders[1]))


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.mark.parametrize("name", ["pins.sqlite3", "pins.json"])
def test_accept_list_show_forget(tmp_path: Path, name: str) -> None:
    store = str(tmp_path / name)
    assert run("store", "--store", store, "accept", "other.example", A)[0] == 0
    assert run("store", "--store", store, "forget", "other.example")[0] == 0
    assert run("store", "--store", store, "list") == (0, "")  # empty, and said so on stderr
    code, out = run("store", "--store", store, "accept", "API.example.com.", A)
    assert code == 0 and out.startswith(f"api.example.com {A} source=accepted")
    code, out = run("store", "--store", store, "accept", "api.example.com", B)  # pre-announce the next key
    assert code == 0 and f"{A},{B}" in out
    code, out = run("store", "--store", store, "show", "api.example.com")
    assert code == 0 and json.loads(out)["pins"] == [A, B]
    code, out = run("store", "--store", store, "accept", "--replace", "api.example.com", B)
    assert json.loads(run("store", "--store", store, "show", "api.example.com")[1])["pins"] == [B]
    assert run("store", "--store", store, "list")[1].count("\n") == 1
    assert run("store", "--store", store, "forget", "api.example.com") == (0, "forgot api.example.com\n")
    assert run("store", "--store", store, "forget", "api.example.com")[0] == 1
    assert run("store", "--store", store, "show", "api.example.com")[0] == 1


def test_export_import_between_store_kinds(tmp_path: Path) -> None:
    sqlite = str(tmp_path / "a.sqlite3")
    run("store", "--store", sqlite, "accept", "one.example", A, B)
    run("store", "--store", sqlite, "accept", "two.example", B, "--ttl", "3600")
    exported = tmp_path / "export.json"
    assert run("store", "--store", sqlite, "export", str(exported))[0] == 0
    target = str(tmp_path / "b.json")
    assert run("store", "--store", target, "import", str(exported)) == (0, "imported 2 records\n")
    with open_store(target) as s, SQLiteStore(sqlite) as t:
        assert s.list() == t.list()


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "pins.sqlite3")
    assert run("store", "--store", store, "accept", "a.example", "sha256/nope")[0] == 2
    assert "invalid pin" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    assert run("store", "--store", store, "import", str(bad))[0] == 2
    assert "not a pinengine pin document" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    before = corrupt.read_bytes()
    assert run("store", "--store", str(corrupt), "list")[0] == 2
    assert "corrupt.json" in capsys.readouterr().err
    assert corrupt.read_bytes() == before  # never replaced
    assert run("store", "--store", store)[0] == 2


@pytest.mark.parametrize("action", [["list"], ["show", "a.example"], ["forget", "a.example"], ["export"]])
def test_read_only_actions_never_invent_a_store(tmp_path: Path, action: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("tpyo.sqlite3", "tpyo.json"):
        typo = tmp_path / name
        assert run("store", "--store", str(typo), *action)[0] == 2
        assert f"no store at {typo}" in capsys.readouterr().err
        assert not typo.exists()
        # The same with --store after the action.
        assert run("store", *action, "--store", str(typo))[0] == 2
        assert not typo.exists()
    assert list(tmp_path.iterdir()) == []


def test_default_store_is_not_invented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PINENGINE_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert run("store", "list")[0] == 2
    assert "no store at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_options_after_the_action_and_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "pins.sqlite3")
    assert run("store", "accept", "--store", store, "a.example", A)[0] == 0
    assert run("store", "list", "--store", store)[1].startswith(f"a.example {A}")
    assert run("store", "forget", "a.example", "--store", store)[0] == 0
    capsys.readouterr()
    assert run("store", "list", "--store", store) == (0, "")
    assert "holds no live records" in capsys.readouterr().err


def test_import_counts_in_words(tmp_path: Path) -> None:
    source = str(tmp_path / "a.sqlite3")
    run("store", "--store", source, "accept", "one.example", A)
    exported = tmp_path / "one.json"
    run("store", "--store", source, "export", str(exported))
    assert run("store", "--store", str(tmp_path / "b.sqlite3"), "import", str(exported)) == (0, "imported 1 record\n")


def test_list_and_show_as_json_with_iso_times(tmp_path: Path) -> None:
    import datetime as dt

    store = str(tmp_path / "pins.sqlite3")
    run("store", "--store", store, "accept", "a.example", A, "--ttl", "3600")
    run("store", "--store", store, "accept", "b.example", B)
    code, out = run("store", "--store", store, "list", "--format", "json")
    docs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [d["host"] for d in docs] == ["a.example", "b.example"]
    with open_store(store) as s:
        record = s.get("a.example")
    assert record is not None and record.expires_at is not None
    assert dt.datetime.fromisoformat(docs[0]["expires_at"].replace("Z", "+00:00")).timestamp() == int(record.expires_at)
    assert docs[1]["expires_at"] is None and docs[0]["pins"] == [A]
    code, out = run("store", "--store", store, "show", "a.example", "--format", "json")
    assert code == 0 and out.count("\n") == 1 and json.loads(out) == docs[0]
    shown = json.loads(run("store", "--store", store, "show", "a.example")[1])
    assert shown == docs[0]
