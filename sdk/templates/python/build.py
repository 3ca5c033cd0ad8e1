"""Build this extension with componentize-py, cached by source hash.

    python build.py            # prints build/<hash>/main.wasm
    python build.py --bundle   # also lays out build/bundle/ (manifest.json + dist/main.wasm)
                               # and prints that: extgate ext publish "$(python build.py --bundle)"

Needs componentize-py==0.25.1 (`pip install componentize-py==0.25.1`), checked first. A build
error is one `file:line:col: message` line per problem on stderr (exit 1);
`--verbose` adds the toolchain's full output. The guest SDK is
vendored in vendor/extgate_sdk (put on the component's path with `-p vendor`), the WIT
files in wit/ (extgate:extension as the root package, alga:extension in wit/deps/).
"""

from __future__ import annotations

import argparse
import hashlib
import re
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


class BuildError(Exception):
    """A failed build, already worded for the developer (`file:line:col: message` lines)."""


def check_toolchain() -> str:
    """The installed componentize-py version, or a BuildError naming this Python and the fix."""
    try:
        return metadata.version("componentize-py")
    except metadata.PackageNotFoundError:
        raise BuildError(
            f"build.py: componentize-py is not installed for {sys.executable} (Python "
            f"{sys.version.split()[0]}): run `{sys.executable} -m pip install componentize-py=={COMPONENTIZE_PY}`, "
            "or run build.py with a Python that has it (extgate's .venv/bin/python)"
        ) from None


def check_syntax() -> None:
    """Compile every source on this interpreter first: a syntax error is reported in a second,
    as file:line:col, instead of inside componentize-py's output after ~10 s."""
    problems = []
    for root in ("src", "vendor"):
        for path in sorted((HERE / root).rglob("*.py")):
            try:
                compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
            except SyntaxError as exc:
                where = f"{path.relative_to(HERE)}:{exc.lineno or 0}:{exc.offset or 0}"
                problems.append(f"{where}: SyntaxError: {exc.msg}")
    if problems:
        raise BuildError("\n".join(problems))


def explain_failure(output: str, paths: list[Path]) -> str:
    """componentize-py's output → `file:line: message` (its Rust backtrace dropped). It names
    the module search paths `/0/`, `/1/`, ... in the order of its `-p` options."""
    message = ""
    lines = output.splitlines()
    for i, line in enumerate(lines):  # anyhow's "Caused by:" holds the Python error
        if line.strip() == "Caused by:" and i + 1 < len(lines):
            message = lines[i + 1].strip()
            break
    if not message:
        errors = [ln.strip() for ln in lines if re.match(r"\s*\w*(Error|Exception)\b", ln)]
        message = errors[-1] if errors else (lines[-1].strip() if lines else "componentize-py failed")
    where = ""
    for m in re.finditer(r'File "/(\d+)/([^"]+)", line (\d+)', output):  # the innermost guest frame wins
        root = paths[int(m.group(1))] if int(m.group(1)) < len(paths) else None
        if root is not None:
            where = f"{(root / m.group(2)).relative_to(HERE)}:{m.group(3)}: "
    return where + re.sub(r" \([^()]*, line \d+\)$", "", message)


def source_hash() -> str:
    digest = hashlib.sha256(metadata.version("componentize-py").encode())
    for path in sources():
        digest.update(str(path.relative_to(HERE)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(*, force: bool = False, verbose: bool = False) -> Path:
    version = check_toolchain()
    if version != COMPONENTIZE_PY:
        print(f"warning: built and tested with componentize-py {COMPONENTIZE_PY}, found {version}", file=sys.stderr)
    out_dir = HERE / "build" / source_hash()
    wasm = out_dir / "main.wasm"
    if wasm.is_file() and not force:
        return wasm
    check_syntax()
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "componentize-py"
    paths = [HERE / "src", HERE / "vendor"]
    cmd = [str(exe) if exe.exists() else "componentize-py", "-d", str(HERE / "wit"), "-w", WORLD,
           "componentize", "-p", str(paths[0]), "-p", str(paths[1]), "app", "-o", str(wasm) + ".tmp"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: S603
    if done.returncode != 0:
        if verbose:
            print(done.stdout, file=sys.stderr)
        raise BuildError(explain_failure(done.stdout, paths) + ("" if verbose else "  (--verbose: full output)"))
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
    parser.add_argument("--verbose", action="store_true", help="on failure, also show componentize-py's output")
    args = parser.parse_args()
    try:
        wasm = build(force=args.force, verbose=args.verbose)
    except BuildError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
    print(bundle(wasm) if args.bundle else wasm)


if __name__ == "__main__":
    main()
