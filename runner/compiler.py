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
   engine config fingerprint, bulk transform version), with a JSON report beside it.

Before step 1 it applies the bulk-body transform (`runner/bulk/transform.py`): when the
`handler` export matches the world, the compiled component gains `handler-b64` and the report
names it (`bulk_export`); when anything does not match, the original is compiled unchanged
and `bulk_note` says why (`ext publish` prints it). The transform never causes a rejection:
a component the checks reject with the transform is checked again without it.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.bulk.transform import FAST_EXPORT, TRANSFORM_VERSION
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
    # The export the runner calls for bulk bodies (None: plain `handler` only), the transform
    # version the artifact was built with (0: built before the transform existed) and why
    # the transform was not applied (empty when it was).
    bulk_export: str | None = None
    transform_version: int = 0
    bulk_note: str = ""
    # Imports whose bytes cross in bulk (e.g. "alga:extension/storage.get"; runner/bulk/imports.py),
    # and why the others that move bytes did not.
    bulk_imports: list[str] = field(default_factory=list)
    bulk_imports_note: str = ""


def allowed_import(name: str) -> bool:
    from runner.host import ALGA_INTERFACES, EXTGATE_INTERFACES

    return name in ALGA_INTERFACES or name in EXTGATE_INTERFACES or bool(WASI_ALLOWED.match(name))


def check_imports(imports: list[str]) -> None:
    bad = [name for name in imports if not allowed_import(name)]
    if bad:
        raise ComponentRejectedError("component imports unsupported interface(s): " + ", ".join(sorted(bad)))


def artifact_path(compiled_dir: Path, content_hash: str, options: EngineOptions | None = None,
                  transform_version: int = TRANSFORM_VERSION) -> Path:
    """Where the artifact for this (hash, wasmtime, engine config, transform version) lives.
    Version 0 is the layout from before the bulk transform (no transform directory)."""
    options = options or EngineOptions()
    digest = content_hash.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError("content hash must be sha256:<64 hex>")
    directory = Path(compiled_dir) / f"wasmtime-{wasmtime_version()}" / options.fingerprint()
    if transform_version:
        directory = directory / f"bulk-v{transform_version}"
    return directory / f"{digest}.cwasm"


def earlier_artifact_paths(compiled_dir: Path, content_hash: str, options: EngineOptions | None = None) -> list[Path]:
    """Artifacts of the same component built by earlier transform versions, newest first:
    still loadable (plain path) until the current version is built."""
    options = options or EngineOptions()
    paths = [artifact_path(compiled_dir, content_hash, options, v) for v in range(TRANSFORM_VERSION - 1, 0, -1)]
    paths.append(artifact_path(compiled_dir, content_hash, options, 0))
    return [p for p in paths if p.is_file()]


def outdated_artifacts(compiled_dir: Path, options: EngineOptions | None = None) -> list[str]:
    """Hashes with an artifact from an earlier transform version and none from this one
    (components published before the current transform: they serve through the plain path)."""
    options = options or EngineOptions()
    placeholder = "sha256:" + "0" * 64
    current = artifact_path(compiled_dir, placeholder, options).parent
    fingerprint_dir = artifact_path(compiled_dir, placeholder, options, 0).parent
    found: set[str] = set()
    try:
        for directory in [fingerprint_dir, *fingerprint_dir.glob("bulk-v*")]:
            if directory != current and directory.is_dir():
                found.update("sha256:" + p.stem for p in directory.glob("*.cwasm"))
    except OSError:
        return []
    return sorted(h for h in found if not artifact_path(compiled_dir, h, options).is_file())


def rebuild_outdated(compiled_dir: Path, component_path: Callable[[str], Path],
                     options: EngineOptions | None = None,
                     on_done: Callable[[str], None] | None = None) -> list[tuple[str, str]]:
    """Rebuild every outdated artifact with the current transform, one at a time (each
    compile is a ~350 MB subprocess). `component_path(hash)` finds the stored component
    (raising LookupError when the bundle is gone). Returns (hash, outcome) pairs; failures
    are reported, never raised: the earlier artifact keeps serving. `on_done(hash)` runs
    after each successful rebuild (the runner evicts the earlier artifact from memory)."""
    outcomes: list[tuple[str, str]] = []
    for content_hash in outdated_artifacts(compiled_dir, options):
        try:
            report = compile_component(component_path(content_hash), compiled_dir, content_hash=content_hash,
                                       options=options)
        except LookupError:
            outcomes.append((content_hash, "skipped: bundle not in the bundle store"))
        except (ComponentRejectedError, CompileFailedError) as exc:
            outcomes.append((content_hash, f"failed: {exc}"))
        else:
            outcomes.append((content_hash, bulk_summary(report)))
            if on_done is not None:
                on_done(content_hash)
    return outcomes


def load_report(compiled_dir: Path, content_hash: str, options: EngineOptions | None = None) -> ComponentReport | None:
    report = artifact_path(compiled_dir, content_hash, options).with_suffix(".json")
    if not report.is_file() or not report.with_suffix(".cwasm").is_file():
        return None
    return read_report(report)


def read_report(path: Path) -> ComponentReport:
    """A report written beside an artifact (reports from before a field existed get its default)."""
    doc = json.loads(path.read_text())
    known = {f for f in ComponentReport.__dataclass_fields__}
    return ComponentReport(**{k: v for k, v in doc.items() if k in known})


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


def bulk_summary(report: ComponentReport) -> str:
    """One line for publishers: whether bodies cross in bulk, and if not, why."""
    imports = f"; imports: {', '.join(f.split('/')[-1] for f in report.bulk_imports)}" if report.bulk_imports else ""
    if report.bulk_export:
        return f"bulk ({report.bulk_export}{imports})"
    return f"plain ({report.bulk_note or 'not transformed'}{imports})"


# --- child process ------------------------------------------------------------------


def _describe_handler(engine: object, component: object, fast_export: str | None = None) -> None:
    """Instantiate once against the host linker and check the handler's signature (and,
    with `fast_export`, that export's bulk types: raises TransformRefused otherwise)."""
    from wasmtime import Store, WasiConfig, WasmtimeError
    from wasmtime.component import RecordType

    from runner.bulk.transform import TransformRefused, verify_types
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
        if fast_export is not None:
            fast = instance.get_func(store, fast_export)
            if fast is None:
                raise TransformRefused(f"`{fast_export}` missing after the transform")
            verify_types(fty, fast.type(store))
    finally:
        store.close()


def _compile_checked(engine: Any, data: bytes, fast_export: str | None) -> tuple[Any, list[str], list[str]]:
    """Compile `data` and run the publish checks; returns (component, imports, exports)."""
    from wasmtime import WasmtimeError
    from wasmtime.component import Component

    try:
        component = Component(engine, data)
    except WasmtimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid component"
        raise ComponentRejectedError(f"not a valid WebAssembly component: {first[:300]}") from exc
    ctype = component.type
    imports = sorted(ctype.imports(engine))
    check_imports(imports)
    # The transform's additions (`handler-b64`, `*-b64` types, `extgate:bulk/*` imports) are
    # not the guest's own.
    exports = sorted(n for n in ctype.exports(engine) if fast_export is None or not n.endswith("-b64"))
    imports = [n for n in imports if not n.startswith("extgate:bulk/")]
    if "handler" not in exports:
        raise ComponentRejectedError("component does not export `handler`")
    _describe_handler(engine, component, fast_export)
    return component, imports, exports


def _worker(src: str, target: str, content_hash: str, fuel: str, stack: str) -> dict[str, object]:
    import time

    from runner.bulk.imports import transform_imports
    from runner.bulk.transform import TransformRefused, transform
    from runner.engine import EngineOptions as Opts
    from runner.engine import get_engine

    options = Opts(consume_fuel=fuel == "1", max_wasm_stack=int(stack))
    engine = get_engine(options).engine
    original = Path(src).read_bytes()
    started = time.perf_counter()
    export_notes: list[str] = []
    import_notes: list[str] = []
    try:
        with_export: bytes | None = transform(original).component
    except TransformRefused as exc:
        with_export = None
        export_notes.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - the transform must never block a publish
        with_export = None
        export_notes.append(f"transform failed: {str(exc)[:300]}")
    with_imports: bytes | None = None
    bulk_imports: list[str] = []
    try:
        imported = transform_imports(with_export or original)
        with_imports, bulk_imports = imported.component, list(imported.functions)
        import_notes.extend(imported.notes)
    except TransformRefused as exc:
        import_notes.append(str(exc))
    except Exception as exc:  # noqa: BLE001
        import_notes.append(f"import transform failed: {str(exc)[:300]}")
    # Most bulk first; each fallback drops one transform. Only the original may reject.
    attempts: list[tuple[bytes, str | None, list[str], list[str]]] = []
    if with_imports is not None:
        attempts.append((with_imports, FAST_EXPORT if with_export else None, bulk_imports, import_notes))
    if with_export is not None:
        attempts.append((with_export, FAST_EXPORT, [], export_notes))
    attempts.append((original, None, [], export_notes))
    result = None
    bulk_export: str | None = None
    bulk_imports = []
    for data, fast, imports_done, notes in attempts:
        try:
            result = _compile_checked(engine, data, fast)
        except TransformRefused as exc:
            notes.append(str(exc))
            continue
        except ComponentRejectedError as exc:
            if data is original:
                raise
            # Judged again less transformed below: only the guest's own faults reject it.
            notes.append(f"transformed component failed the checks: {str(exc)[:300]}")
            continue
        bulk_export, bulk_imports = fast, imports_done
        break
    assert result is not None
    component, imports, exports = result
    compile_ms = (time.perf_counter() - started) * 1000
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(component.serialize())
    os.replace(tmp, out)
    report = ComponentReport(content_hash=content_hash, wasmtime_version=wasmtime_version(),
                             engine_fingerprint=options.fingerprint(), imports=imports, exports=exports,
                             artifact=str(out), compile_ms=round(compile_ms, 1), bulk_export=bulk_export,
                             transform_version=TRANSFORM_VERSION,
                             bulk_note="" if bulk_export else "; ".join(export_notes),
                             bulk_imports=bulk_imports, bulk_imports_note="; ".join(import_notes))
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
