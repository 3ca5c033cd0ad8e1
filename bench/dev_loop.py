"""`extgate dev`: time from saving a source file to the first log line of the new version.

    .venv/bin/python bench/dev_loop.py --lang python --runs 5
    .venv/bin/python bench/dev_loop.py --lang js --runs 5

Scaffolds a project (`extgate ext new`) in a temp directory with its own per-user store
(`XDG_DATA_HOME` in the temp dir), runs `extgate dev` on it (which starts `extgate serve`), and
then, per run: writes `src/app.*` with a new marker in the printed line (a real rebuild: the
build cache never hits), calls `/hello` every 0.1 s, and stops the clock when `extgate dev`
prints the log line carrying the marker. Prints each run with `extgate dev`'s own build and
publish split, then the range. Not part of `make bench` (it takes minutes, not seconds).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", choices=["python", "js"], default="python")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from tests.sdk.conftest import free_port

    tmp = Path(tempfile.mkdtemp(prefix="extgate-dev-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXTGATE_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               XDG_DATA_HOME=str(tmp / "xdg"), EXTGATE_PORT=str(port))
    subprocess.run(["extgate", "ext", "new", "bench", "--lang", args.lang], cwd=tmp, env=env, check=True,
                   capture_output=True)
    project = tmp / "bench"
    if args.lang == "js":  # the same locked tree as examples/js-notes
        subprocess.run(["make", "-s", "-C", str(ROOT / "examples"), "js-deps"], check=True, capture_output=True)
        (project / "node_modules").symlink_to(ROOT / "examples" / "js-notes" / "node_modules")
    source = project / "src" / ("app.py" if args.lang == "python" else "app.js")
    original = source.read_text()

    proc = subprocess.Popen(["extgate", "dev", str(project)], cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln.rstrip("\n")) for ln in proc.stdout or []], daemon=True).start()

    def wait(needle: str, timeout: float, poke: object = None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(poke):
                poke()
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if needle in line:
                return line
        raise SystemExit(f"{needle!r} not seen within {timeout} s")

    results: list[tuple[float, str]] = []
    try:
        token = wait("call it: curl", 600).split("Bearer ")[1].split('"')[0]
        url = f"http://127.0.0.1:{port}/api/ext/example.com.example.bench/hello"
        with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=10) as client:
            wait("watching", 30)
            for run in range(1, args.runs + 1):
                marker = f"run-{run}-{time.time_ns()}"
                started = time.monotonic()
                source.write_text(original.replace("hello called by tenant", f"{marker} hello called by tenant"))
                installed = wait("installed for tenant", 600)
                wait(marker, 60, poke=lambda: client.get(url))
                elapsed = time.monotonic() - started
                split = re.search(r"build [\d.]+ s, publish [\d.]+ s", installed)
                results.append((elapsed, split.group(0) if split else ""))
                print(f"run {run}: save → first log line {elapsed:.1f} s ({results[-1][1]})", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    times = sorted(t for t, _ in results)
    print(f"{args.lang}: {len(times)} runs, save → first log line {times[0]:.1f}–{times[-1]:.1f} s "
          f"(median {times[len(times) // 2]:.1f} s)")


if __name__ == "__main__":
    main()
