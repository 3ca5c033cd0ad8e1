"""Bad input when publishing (issue 21): a bundle whose manifest version already exists with
other contents is one line naming what to do, and nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli.main import app
from tests.support import COMPONENT_HEADER, write_bundle


def test_existing_version_says_bump_the_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("service.container.default_component_validator", lambda settings: None)
    runner = CliRunner()
    first = runner.invoke(app, ["ext", "publish", str(write_bundle(tmp_path / "a"))])
    assert first.exit_code == 0, first.output
    changed = write_bundle(tmp_path / "b", component=COMPONENT_HEADER + b"\x00")  # same version, new code
    again = runner.invoke(app, ["ext", "publish", str(changed)])
    assert again.exit_code == 1
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1  # and no "data directory" line: nothing was changed
    err = json.loads(lines[0])
    assert err["error"] == "version_exists"
    assert 'bump "version" in manifest.json' in err["detail"]["message"]
    listed = json.loads(runner.invoke(app, ["ext", "list"]).stdout)
    assert len(listed) == 1 and len(listed[0]["versions"]) == 1
