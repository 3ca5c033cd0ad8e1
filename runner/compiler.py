"""Publish-time validation and ahead-of-time compilation of guest components.

Compiling a real guest takes seconds and peaks around 350 MB RSS, so it never happens on
the request path and never inside a request worker: `compile_component` runs it in a
child process (`python -m runner.compiler _worker …`) that

1. compiles the component with the runner's engine configuration,
2. checks its imports and exports (must export `handler` with the runner signature;
   imports limited to `alga:extension/*`, extgate's optional interfaces and
   `wasi:{io,clocks,random,cli,filesystem,sockets}@0.2.x`),
3. instantiates it once against the real host linker (a link check: catches wrong
   signatures for allowed names) without calling it,
4. writes the serialized artifact atomically, keyed by (content hash, wasmtime version,
   engine config fingerprint), with a JSON report beside it.

A rejected component raises `ComponentRejectedError` naming the offending import/export.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from runner.engine import EngineOptions, wasmtime_version

WASI_ALLOWED = re.compile(r"^wasi:(io|clocks|random|cli|filesystem|sockets)/[a-z0-9-]+@0\.2\.\d+$")
HANDLER_PARAM_FIELDS = ["context", "http"]
HANDLER_RESULT_FIELDS = ["status", "headers", "body"]


class ComponentRejectedError(ValueError):
    """The component cannot run here; the message names the reason (safe to show the publisher)."""


class CompileFailedError(RuntimeError):
    """Compilation failed for a host-side reason (timeout, crash)."""


@dataclass(frozen=True)
class ComponentReport:
    content_hash: str
    wasmtime_version: str
    engine_fingerprint: str
    imports: list[str]
    exports: list[str]
    artifact: str
    compile_ms: float


def allowed_import(name: str) -> bool:
    from runner.host import ALGA_INTERFACES, EXTGATE_INTERFACES

    return name in ALGA_INTERFACES or name in EXTGATE_INTERFACES or bool(WASI_ALLOWED.match(name))


def check_imports(imports: list[str]) -> None:
    bad = [name for name in imports if not allowed_import(name)]
    if bad:
        raise ComponentRejectedError("component imports unsupported interface(s): " + ", ".join(sorted(bad)))


def artifact_path(compiled_dir: Path, content_hash: str, options: EngineOptions | None = None) -> Path:
    options = options or EngineOptions()
    digest = content_hash.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError("content hash must be sha256:<64 hex>")
    return Path(compiled_dir) / f"wasmtime-{wasmtime_version()}" / options.fingerprint() / f"{digest}.cwasm"


def load_report(compiled_dir: Path, content_hash: str, options: EngineOptions | None = None) -> ComponentReport | None:
    report = artifact_path(compiled_dir, content_hash, options).with_suffix(".json")
    if not report.is_file() or not report.with_suffix(".cwasm").is_file():
        return None
    return ComponentReport(**json.loads(report.read_text()))


def compile_component(
    wasm: bytes | Path,
    compiled_dir: Path,
    *,
    content_hash: str | None = None,
    options: EngineOptions | None = None,
    timeout_s: float = 600.0,
    force: bool = False,
) -> ComponentReport:
    """Validate and precompile in a subprocess; returns the report (cached on disk)."""
    options = options or EngineOptions()
    data = wasm if isinstance(wasm, bytes) else Path(wasm).read_bytes()
    content_hash = content_hash or "sha256:" + hashlib.sha256(data).hexdigest()
    target = artifact_path(compiled_dir, content_hash, options)
    if not force:
        cached = load_report(compiled_dir, content_hash, options)
        if cached is not None:
            return cached
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="extgate-compile-") as tmp:
        src = Path(tmp) / "component.wasm"
        src.write_bytes(data)
        cmd = [sys.executable, "-m", "runner.compiler", "_worker", str(src), str(target), content_hash,
               "1" if options.consume_fuel else "0", str(options.max_wasm_stack)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                             os.environ.get("PYTHONPATH", "")])}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)  # noqa: S603
        except subprocess.TimeoutExpired as exc:
            raise CompileFailedError(f"compilation exceeded {timeout_s:.0f} s") from exc
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    if result.get("rejected"):
        raise ComponentRejectedError(result["rejected"])
    if proc.returncode != 0 or "report" not in result:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise CompileFailedError(f"compiler process failed (exit {proc.returncode}): {tail[0][:300]}")
    return ComponentReport(**result["report"])


# --- child process ------------------------------------------------------------------


def _describe_handler(engine: object, component: object) -> None:
    """Instantiate once against the host linker and check the handler's signature."""
    from wasmtime import Store, WasiConfig, WasmtimeError
    from wasmtime.component import RecordType

    from runner.host import build_linker

    linker = build_linker(engine)  # type: ignore[arg-type]
    store = Store(engine)  # type: ignore[arg-type]
    try:
        store.set_wasi(WasiConfig())
        store.set_limits(memory_size=512 << 20)
        store.set_epoch_deadline(1 << 40)
        try:
            instance = linker.instantiate(store, component)  # type: ignore[arg-type]
        except WasmtimeError as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            raise ComponentRejectedError("component does not link against the runner world: "
                                         + (lines[-1].strip() if lines else "unknown error")[:300]) from exc
        func = instance.get_func(store, "handler")
        if func is None:
            raise ComponentRejectedError("component does not export a `handler` function")
        fty = func.type(store)
        params = fty.params
        result = fty.result
        ok = (
            len(params) == 1
            and isinstance(params[0][1], RecordType)
            and [n for n, _ in params[0][1].fields] == HANDLER_PARAM_FIELDS
            and isinstance(result, RecordType)
            and [n for n, _ in result.fields] == HANDLER_RESULT_FIELDS
        )
        if not ok:
            raise ComponentRejectedError(
                "`handler` must be func(request: execute-request) -> execute-response")
    finally:
        store.close()


def _worker(src: str, target: str, content_hash: str, fuel: str, stack: str) -> dict[str, object]:
    import time

    from wasmtime import WasmtimeError
    from wasmtime.component import Component

    from runner.engine import EngineOptions as Opts
    from runner.engine import get_engine

    options = Opts(consume_fuel=fuel == "1", max_wasm_stack=int(stack))
    engine = get_engine(options).engine
    started = time.perf_counter()
    try:
        component = Component(engine, Path(src).read_bytes())
    except WasmtimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid component"
        raise ComponentRejectedError(f"not a valid WebAssembly component: {first[:300]}") from exc
    compile_ms = (time.perf_counter() - started) * 1000
    ctype = component.type
    imports = sorted(ctype.imports(engine))
    exports = sorted(ctype.exports(engine))
    check_imports(imports)
    if "handler" not in exports:
        raise ComponentRejectedError("component does not export `handler`")
    _describe_handler(engine, component)
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(component.serialize())
    os.replace(tmp, out)
    report = ComponentReport(content_hash=content_hash, wasmtime_version=wasmtime_version(),
                             engine_fingerprint=options.fingerprint(), imports=imports, exports=exports,
                             artifact=str(out), compile_ms=round(compile_ms, 1))
    out.with_suffix(".json").write_text(json.dumps(asdict(report)))
    return asdict(report)


def _main(argv: list[str]) -> int:
    if len(argv) != 6 or argv[0] != "_worker":
        print("usage: python -m runner.compiler _worker SRC TARGET HASH FUEL STACK", file=sys.stderr)
        return 2
    try:
        report = _worker(*argv[1:])
    except ComponentRejectedError as exc:
        print(json.dumps({"rejected": str(exc)}))
        return 0
    print(json.dumps({"report": report}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
