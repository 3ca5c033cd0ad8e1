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


def test_server_logging_shows_extgate_info_lines_once() -> None:
    """The servers configure logging so extgate's own INFO lines reach stderr, one per record."""
    import subprocess
    import sys

    code = ("import logging; from runner.logging_config import configure_logging as c; c(); c(); "
            "logging.getLogger('extgate.gateway').info('hello %s', 42); logging.getLogger('x').debug('hidden')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,  # noqa: S603
                         env={"PATH": "", "EXTGATE_LOG_LEVEL": "info"})
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith("INFO extgate.gateway: hello 42"), lines
    assert lines[0][:4].isdigit() and "T" in lines[0].split()[0] and lines[0].split()[0].endswith("Z")
