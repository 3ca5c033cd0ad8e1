"""Runs the JavaScript SDK's own unit tests (`node --test sdk/js/test/`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SDK_JS = Path(__file__).resolve().parents[2] / "sdk" / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_unit_tests() -> None:
    out = subprocess.run(["node", "--test", "test/"], cwd=SDK_JS, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# fail 0" in out.stdout
