"""The scaffold works end to end as printed (issue 21, part 2).

Reproduction: `extgate ext new hello` printed `cd hello; python build.py --bundle; extgate ext
publish build/bundle`; done as printed, `publish` created `hello/.extgate/` and nothing else ever
saw the extension; its manifest lacked `cap:debug.logs`. Now the printed `next` steps, run
verbatim in bash from where `ext new` ran, build, publish into the per-user store the server
uses, install, and call the extension through that server; `ext list` from another directory
finds it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.sdk.conftest import EXAMPLES, DevStore, node_available, save_build_cache, seed_build_cache


def extgate(store: DevStore, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["extgate", *args], cwd=cwd, env=store.env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["python", "js"])
def test_next_steps_verbatim(lang: str, dev_store: DevStore, tmp_path: Path) -> None:
    if lang == "js":
        if not node_available():
            pytest.skip("node/npm not installed")
        # `npm ci` below installs from npm's cache once examples/js-notes did (same lock file).
        subprocess.run(["make", "-s", "-C", str(EXAMPLES), "js-deps"], check=True, capture_output=True, timeout=600)
    work = tmp_path / "work"
    work.mkdir()
    name = f"steps-{lang}"
    created = extgate(dev_store, work, "ext", "new", name, "--lang", lang)
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    steps: list[str] = out["next"]
    assert steps[0] == f"cd {name}"
    manifest = json.loads((work / name / "manifest.json").read_text())
    assert "cap:debug.logs" in manifest["capabilities"]
    seed_build_cache(work / name, name)

    script = "set -euo pipefail\n" + "\n".join(steps)
    done = subprocess.run(["bash", "-c", script], cwd=work, env=dev_store.env, capture_output=True, text=True,
                          timeout=600)
    save_build_cache(work / name, name)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    # the last step is the curl through the running server: the extension answered
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"message": "Hello", "tenant": "acme"}
    assert f"extgate: data directory: {dev_store.data_dir} (per-user default" in done.stderr
    assert not (work / name / ".extgate").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = extgate(dev_store, elsewhere, "ext", "list")
    assert out["slug"] in [e["slug"] for e in json.loads(listed.stdout)]
    installs = json.loads(extgate(dev_store, elsewhere, "install", "list", "--tenant", "acme").stdout)
    assert any("cap:debug.logs" in i["granted_capabilities"] for i in installs)  # printed lines reach the stream
