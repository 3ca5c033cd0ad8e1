"""One store per user, from any directory (issue 21, part 1).

Reproduction: publishing from an extension's own directory used to create `./.extgate` there
(the default was relative to the working directory), so `ext list` from anywhere else never saw
the extension. Now every command without `EXTGATE_DATA_DIR` uses the per-user XDG directory,
except that an existing `./.extgate` is still used, with a one-line notice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.contract import data_dir
from runner.settings import RunnerSettings
from service.cli.main import app
from service.settings import SHIPPED_POLICIES, Settings
from tests.support import write_bundle


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No EXTGATE_DATA_DIR; the per-user data home in tmp."""
    monkeypatch.delenv("EXTGATE_DATA_DIR", raising=False)
    monkeypatch.delenv("EXTGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("EXTGATE_POLICY_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data_dir, "_noticed", set())
    return tmp_path / "xdg" / "extgate"


def test_default_is_per_user_from_any_directory(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for cwd in (tmp_path / "a", tmp_path / "a" / "b"):
        cwd.mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(cwd)
        assert Settings().data_dir == home
        assert RunnerSettings().data_dir == home  # a standalone runner agrees
        # the policies bootstrapped into a fresh store do not depend on the directory either
        assert Settings().policy_dir == SHIPPED_POLICIES
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: only absolute paths count
    assert data_dir.user_data_dir() == Path.home().resolve() / ".local" / "share" / "extgate"
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "explicit"))
    assert Settings().data_dir == tmp_path / "explicit"


def test_existing_dot_extgate_is_used_with_a_notice(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".extgate").mkdir()
    assert Settings().data_dir == tmp_path / ".extgate"
    assert Settings().data_dir == tmp_path / ".extgate"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1  # one line, once per process
    assert str(tmp_path / ".extgate") in err[0] and str(home) in err[0] and "EXTGATE_DATA_DIR" in err[0]


def test_publish_from_the_project_directory_is_seen_from_elsewhere(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.container.default_component_validator", lambda settings: None)
    project = tmp_path / "hello"
    write_bundle(project / "build" / "bundle")
    monkeypatch.chdir(project)
    runner = CliRunner()
    published = runner.invoke(app, ["ext", "publish", "build/bundle"])
    assert published.exit_code == 0, published.output
    assert not (project / ".extgate").exists()  # the old behaviour: a private store in the project
    assert published.stderr.strip().splitlines()[-1] == (
        f"extgate: data directory: {home} (per-user default; EXTGATE_DATA_DIR overrides)")
    slug = json.loads(published.stdout)["slug"]

    monkeypatch.chdir(tmp_path)
    listed = runner.invoke(app, ["ext", "list"])
    assert listed.exit_code == 0, listed.output
    assert slug in [e["slug"] for e in json.loads(listed.stdout)]
    assert listed.stderr == ""  # reads do not announce the store; changes do
