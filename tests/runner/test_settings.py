from __future__ import annotations

import stat
from pathlib import Path

from runner.settings import RunnerSettings


def test_dev_credentials_created_private(tmp_path: Path) -> None:
    s = RunnerSettings(data_dir=tmp_path)
    token = s.service_token()
    path = tmp_path / "keys" / "runner-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert s.service_token() == token and len(token) >= 32
    s.keyring()
    assert stat.S_IMODE((tmp_path / "keys" / "secret-keys").stat().st_mode) == 0o600


def test_env_prefix(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXTGATE_RUNNER_TOKEN", "x" * 20)
    s = RunnerSettings()
    assert s.data_dir == tmp_path and s.service_token() == "x" * 20
    assert s.compiled_dir == tmp_path / "compiled"
