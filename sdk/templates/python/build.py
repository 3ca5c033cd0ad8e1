"""Build this extension with componentize-py, cached by source hash.

    python build.py            # prints build/<hash>/main.wasm
    python build.py --bundle   # also lays out build/bundle/ (manifest.json + dist/main.wasm)
                               # and prints that: extgate ext publish "$(python build.py --bundle)"

Needs componentize-py==0.25.1 (`pip install componentize-py==0.25.1`). The guest SDK is
vendored in vendor/extgate_sdk (put on the component's path with `-p vendor`), the WIT
files in wit/ (extgate:extension as the root package, alga:extension in wit/deps/).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORLD = "runner-ext"
COMPONENTIZE_PY = "0.25.1"


def sources() -> list[Path]:
    files = [HERE / "manifest.json"]
    for root in ("src", "vendor", "wit"):
        files += sorted(p for p in (HERE / root).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def source_hash() -> str:
    digest = hashlib.sha256(metadata.version("componentize-py").encode())
    for path in sources():
        digest.update(str(path.relative_to(HERE)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(*, force: bool = False) -> Path:
    version = metadata.version("componentize-py")
    if version != COMPONENTIZE_PY:
        print(f"warning: built and tested with componentize-py {COMPONENTIZE_PY}, found {version}", file=sys.stderr)
    out_dir = HERE / "build" / source_hash()
    wasm = out_dir / "main.wasm"
    if wasm.is_file() and not force:
        return wasm
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "componentize-py"
    cmd = [str(exe) if exe.exists() else "componentize-py", "-d", str(HERE / "wit"), "-w", WORLD,
           "componentize", "-p", str(HERE / "src"), "-p", str(HERE / "vendor"), "app", "-o", str(wasm) + ".tmp"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - fixed argv
    Path(str(wasm) + ".tmp").replace(wasm)  # atomic: a half-written file never looks cached
    return wasm


def bundle(wasm: Path) -> Path:
    target = HERE / "build" / "bundle"
    shutil.rmtree(target, ignore_errors=True)
    (target / "dist").mkdir(parents=True)
    shutil.copyfile(HERE / "manifest.json", target / "manifest.json")
    shutil.copyfile(wasm, target / "dist" / "main.wasm")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--bundle", action="store_true", help="lay out build/bundle/ and print its path")
    args = parser.parse_args()
    wasm = build(force=args.force)
    print(bundle(wasm) if args.bundle else wasm)


if __name__ == "__main__":
    main()
