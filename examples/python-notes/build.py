"""Build the python-notes example with componentize-py, cached by source hash.

Like `examples/build_guest.py` (whose WIT assembly it reuses) but with the guest SDK on
the build path: `-p sdk/python` makes `extgate_sdk` importable inside the component, and
the SDK's sources are part of the cache key. Prints the path of `build/<hash>/main.wasm`.

    .venv/bin/python examples/python-notes/build.py [--force] [--bundle]
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
REPO = HERE.parent.parent
SDK = REPO / "sdk" / "python"
sys.path.insert(0, str(HERE.parent))

from build_guest import WIT_ROOT, WORLD, assemble_wit  # noqa: E402 - needs the path above


def sources() -> list[Path]:
    files = [HERE / "app.py", HERE / "manifest.json"]
    files += sorted(SDK.rglob("*.py"))
    files += sorted(WIT_ROOT.rglob("*.wit"))
    return [f for f in files if "__pycache__" not in f.parts]


def source_hash() -> str:
    digest = hashlib.sha256(metadata.version("componentize-py").encode())
    for path in sources():
        digest.update(str(path.relative_to(REPO)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(*, force: bool = False) -> Path:
    out_dir = HERE / "build" / source_hash()
    wasm = out_dir / "main.wasm"
    if wasm.is_file() and not force:
        return wasm
    out_dir.mkdir(parents=True, exist_ok=True)
    wit_dir = assemble_wit(out_dir / "wit")
    tmp = out_dir / "main.wasm.tmp"
    exe = Path(sys.executable).parent / "componentize-py"
    cmd = [str(exe) if exe.exists() else "componentize-py", "-d", str(wit_dir), "-w", WORLD,
           "componentize", "-p", str(HERE), "-p", str(SDK), "app", "-o", str(tmp)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - fixed argv
    tmp.replace(wasm)  # atomic: a half-written file never looks like a cached build
    return wasm


def bundle(wasm: Path) -> Path:
    """build/bundle/ = manifest.json + dist/main.wasm, ready for `extgate ext publish`."""
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
