"""Package metadata users rely on: the license file and the extras they type (issue 15, items 10-11)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_is_the_apache_text_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_every_integration_has_an_extra_and_all_holds_them() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    integrations = ("cryptography", "requests", "urllib3", "redis", "httpx", "aiohttp", "grpc", "prometheus")
    for name in integrations:
        assert extras[name], name
    union = {req for name in integrations for req in extras[name]}
    assert set(extras["all"]) == union
