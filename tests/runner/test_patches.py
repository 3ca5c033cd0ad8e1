"""The wasmtime-py patches: fail loudly if the pinned internals change."""

from __future__ import annotations

import threading
from importlib import metadata

from wasmtime.component import _enter
from wasmtime.component import _types as T

from runner import patches
from tests.runner.conftest import body_of, make_request


def test_pinned_version_and_sources_unchanged() -> None:
    # If this fails after a wasmtime upgrade: re-verify fastbytes (value layout), the
    # thread-local exception handoff and the variant lowering, then update the hashes.
    assert metadata.version("wasmtime") == patches.PINNED_WASMTIME
    assert patches.current_sources() == patches.EXPECTED_SOURCES
    patches.check_compatible()


def test_patches_installed() -> None:
    patches.install()
    assert T.ListType.convert_to_c is patches._list_to_c
    assert T.VariantLikeType._lower is patches._variant_lower
    assert _enter.enter_wasm is patches._enter_wasm


def test_fastbytes_roundtrip_is_exact(runner, wat_guests) -> None:
    for data in (b"", b"\x00", bytes(range(256)) * 1000, b"\xff" * 70_000):
        resp = runner.execute(make_request(wat_guests["echo"], "/", method="POST", body=data))
        assert body_of(resp) == data


def test_host_exception_handoff_is_per_thread() -> None:
    patches.install()
    seen: dict[str, BaseException | None] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        def fail(_store: object) -> None:
            raise KeyError(name)

        patches._catch_exceptions(None, fail)  # type: ignore[arg-type]
        barrier.wait()  # both threads have stored an exception before either reads it
        try:
            patches._maybe_raise_last_exn()
            seen[name] = None
        except KeyError as exc:
            seen[name] = exc

    import wasmtime

    original = wasmtime.StoreContext
    wasmtime.StoreContext = _FakeStoreContext  # type: ignore[misc]
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        wasmtime.StoreContext = original  # type: ignore[misc]
    assert seen["a"].args == ("a",) and seen["b"].args == ("b",)  # type: ignore[union-attr]


class _FakeStoreContext:
    def __init__(self, _ptr: object) -> None:
        pass

    def _invalidate(self) -> None:
        pass


def test_result_tagging_matches_the_hard_coded_choice(runner, demo_hash) -> None:
    """Only secrets.get (result<string, secret-error>) needs tagged Variants in this world."""
    from wasmtime.component import Component, ComponentInstanceType, FuncType

    from runner.compiler import artifact_path

    engine = runner.engine.engine
    comp = Component.deserialize_file(engine, str(artifact_path(runner.settings.compiled_dir, demo_hash)))
    tagged = set()
    for name, ext in comp.type.imports(engine).items():
        ity = ext.ty
        if not name.startswith(("alga:", "extgate:")) or not isinstance(ity, ComponentInstanceType):
            continue
        for fname, fext in ity.exports(engine).items():
            fty = fext.ty
            if isinstance(fty, FuncType) and isinstance(fty.result, T.ResultType) and fty.result._tagged():
                tagged.add(f"{name}#{fname}")
    assert tagged == {"alga:extension/secrets#get"}


def test_type_structure_is_read_once_and_calls_reuse_it(runner, wat_guests) -> None:  # type: ignore[no-untyped-def]
    """Types are immutable: their structure is read from the C API once per type object, and
    the runner keeps one handler FuncType per component (results unchanged, see the runner's
    other tests, which all go through `call_typed`)."""
    patches.install()
    assert isinstance(T.RecordType.__dict__["fields"], property)
    for _ in range(3):
        resp = runner.execute(make_request(wat_guests["echo"], "/echo", method="POST", body=b"abc"))
        assert body_of(resp) == b"abc"
    fty = runner._handler_types[f"{wat_guests['echo']}#handler-b64"]  # the bulk export's type (issue 18)
    params = fty.params
    assert fty.params is params  # memoized on the type object
    record = params[0][1]
    assert record.fields is record.fields
