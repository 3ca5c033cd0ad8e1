"""Bulk bodies (runner/bulk/): the transformed `handler-b64` path must behave byte for byte
like the plain `handler` path. Every round trip runs through two runners sharing one artifact
directory: one calls the bulk export, the other (`runner_bulk_bodies=False`) the plain one."""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.bulk import abi, codec
from runner.bulk.transform import FAST_EXPORT, TRANSFORM_VERSION, TransformRefused, plan_layout, transform
from runner.compiler import (
    artifact_path,
    compile_component,
    load_report,
    outdated_artifacts,
    rebuild_outdated,
)
from runner.contract.envelope import Keyring
from runner.executor import Runner
from tests.runner.conftest import body_of, hash_of, make_request, make_runner, wat_bytes

MIB = 1 << 20
RNG = random.Random(18)
ALL_BYTES = bytes(range(256)) * 16  # every byte value, NULs included
SIZES = [0, 1, 2, 3, 4, 5, 7, 255, 4095, 4096, 4097, 65535, 65536, 65537, MIB - 1, MIB]
BODIES: list[bytes | None] = [None, ALL_BYTES, "héllo 日本\u2028".encode()] + [
    RNG.randbytes(n) for n in SIZES]


def _id(body: bytes | None) -> str:
    return "none" if body is None else f"{len(body)}B"


@pytest.fixture(scope="module")
def bulk_guests(compiled_dir: Path) -> dict[str, str]:
    out = {}
    for name in ("odd_echo", "string_body"):
        data = wat_bytes(name)
        out[name] = compile_component(data, compiled_dir, content_hash=hash_of(data)).content_hash
    return out


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory, compiled_dir: Path,
            keyring: Keyring) -> Iterator[tuple[Runner, Runner]]:
    bulk = make_runner(tmp_path_factory.mktemp("bulk"), compiled_dir, keyring)
    plain = make_runner(tmp_path_factory.mktemp("plain"), compiled_dir, keyring, runner_bulk_bodies=False)
    yield bulk, plain
    bulk.close()
    plain.close()


def _both(runners: tuple[Runner, Runner], content_hash: str, path: str, body: bytes | None,
          headers: dict[str, str] | None = None) -> dict[str, object]:
    """Run on both paths, assert identical results, return the (shared) result."""
    results = []
    for runner in runners:
        resp = runner.execute(make_request(content_hash, path, method="POST", body=body, request_id="req-18",
                                           headers=headers or {"content-type": "application/octet-stream"}))
        results.append(resp.model_dump())
    assert results[0] == results[1]
    return results[0]


# --- publish: which components get the bulk export ---------------------------------------------


def test_matching_components_get_the_bulk_export(compiled_dir: Path, wat_guests: dict[str, str],
                                                 bulk_guests: dict[str, str], demo_hash: str) -> None:
    for content_hash in (wat_guests["echo"], wat_guests["faults"], bulk_guests["odd_echo"], demo_hash):
        report = load_report(compiled_dir, content_hash)
        assert report is not None
        assert report.bulk_export == FAST_EXPORT and report.bulk_note == ""
        assert report.transform_version == TRANSFORM_VERSION
        assert FAST_EXPORT not in report.exports  # the transform's additions are not the guest's


def test_mismatching_handler_keeps_the_plain_path(compiled_dir: Path, bulk_guests: dict[str, str],
                                                  runners: tuple[Runner, Runner]) -> None:
    report = load_report(compiled_dir, bulk_guests["string_body"])
    assert report is not None and report.bulk_export is None
    assert "types differ" in report.bulk_note
    resp = _both(runners, bulk_guests["string_body"], "/", None)
    assert resp["status"] == 200 and resp["error"] is None


def test_transform_refuses_what_it_cannot_prove() -> None:
    data = wat_bytes("echo")
    once = transform(data).component
    with pytest.raises(TransformRefused, match="already exports"):
        transform(once)
    with pytest.raises(TransformRefused, match="not a component"):
        transform(b"\0asm\x01\0\0\0")
    with pytest.raises(TransformRefused, match="no `handler`"):
        transform(wat_bytes("no_handler"))


def test_transform_is_deterministic(tmp_path: Path) -> None:
    data = wat_bytes("odd_echo")
    assert transform(data).component == transform(data).component
    first = compile_component(data, tmp_path / "a", content_hash=hash_of(data))
    second = compile_component(data, tmp_path / "b", content_hash=hash_of(data))
    assert (first.bulk_export, first.exports, first.imports) == (second.bulk_export, second.exports, second.imports)


# --- behaviour: byte-identical through both paths -----------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=_id)
@pytest.mark.parametrize("guest", ["echo", "odd_echo"])
def test_wat_round_trips_are_identical(runners: tuple[Runner, Runner], wat_guests: dict[str, str],
                                       bulk_guests: dict[str, str], guest: str, body: bytes | None) -> None:
    content_hash = {**wat_guests, **bulk_guests}[guest]
    resp = _both(runners, content_hash, "/echo", body)
    assert resp["error"] is None
    assert resp["body_b64"] == (None if body is None else base64.b64encode(body).decode())


@pytest.mark.parametrize("body", [b"", b"x", b"xy", b"xyz", ALL_BYTES, RNG.randbytes(65536 + 1),
                                  RNG.randbytes(MIB)], ids=_id)
def test_python_guest_round_trips_are_identical(runners: tuple[Runner, Runner], demo_hash: str,
                                                body: bytes) -> None:
    resp = _both(runners, demo_hash, "/echo", body)
    assert resp["error"] is None and resp["status"] == 200
    assert base64.b64decode(str(resp["body_b64"])) == body


@pytest.mark.parametrize("body_b64", ["", "QQ==", "QUI=", "QUJD", " QUJD\n", "QR==", "QQ=", "QQQQ=", "QQQQ==",
                                      "Q", "QQ==QQ==", "QQ\n==", "QU JD", "é===", "QQ===", "=QQQ"])
def test_request_bodies_are_accepted_and_refused_alike(runners: tuple[Runner, Runner],
                                                       wat_guests: dict[str, str], body_b64: str) -> None:
    """The bulk path translates canonical base64 without decoding it: every other text must
    still be judged exactly as the plain path's decoder judges it."""
    results = []
    for runner in runners:
        req = make_request(wat_guests["echo"], "/echo", method="POST", request_id="req-18")
        req.http.body_b64 = body_b64
        results.append(runner.execute(req).model_dump())
    assert results[0] == results[1]


def test_request_body_limit_is_the_same(tmp_path: Path, compiled_dir: Path, keyring: Keyring,
                                        wat_guests: dict[str, str]) -> None:
    for name in ("bulk", "plain"):
        (tmp_path / name).mkdir()
    limited = [make_runner(tmp_path / name, compiled_dir, keyring, runner_max_request_body_bytes=1000,
                           runner_bulk_bodies=name == "bulk") for name in ("bulk", "plain")]
    try:
        for size in (999, 1000, 1001, 1002, 4000):
            results = [r.execute(make_request(wat_guests["echo"], "/echo", method="POST", body=b"x" * size,
                                              request_id="req-18")).model_dump() for r in limited]
            assert results[0] == results[1]
            assert (results[0]["error"] == "payload_too_large") == (size > 1000)
    finally:
        for r in limited:
            r.close()


def test_non_ascii_header_values_cross_unchanged(runners: tuple[Runner, Runner],
                                                 bulk_guests: dict[str, str]) -> None:
    value = "text/plain; name=\"é 日本 🙂\""
    resp = _both(runners, bulk_guests["odd_echo"], "/echo", b"\x00\xff", headers={"content-type": value})
    assert isinstance(resp["headers"], dict) and resp["headers"]["content-type"] == value


def test_the_guest_sees_the_same_request(runners: tuple[Runner, Runner], demo_hash: str) -> None:
    """The Python guest reports what it received (`/echo` answers the body and content type)."""
    body = ALL_BYTES + "é".encode()
    resp = _both(runners, demo_hash, "/echo", body, headers={"content-type": "application/x-é"})
    assert base64.b64decode(str(resp["body_b64"])) == body


def test_faults_behave_the_same(runners: tuple[Runner, Runner], wat_guests: dict[str, str]) -> None:
    for path, limits in (("/trap", {}), ("/huge", {}), ("/big", {}), ("/oom", {"memory_mb": 32})):
        results = [r.execute(make_request(wat_guests["faults"], path, limits=limits)).model_dump()
                   for r in runners]
        assert results[0] == results[1], path
        assert results[0]["error"] is not None and results[0]["body_b64"] is None


def test_memory_limit_counts_adapter_blocks(runners: tuple[Runner, Runner], wat_guests: dict[str, str]) -> None:
    """A body whose adapter text does not fit under the memory limit fails closed (never a
    partial body); the same call with room succeeds."""
    bulk, _ = runners
    body = RNG.randbytes(MIB)
    tight = bulk.execute(make_request(wat_guests["echo"], "/echo", method="POST", body=body, limits={"memory_mb": 1}))
    assert tight.error in {"memory_limit", "guest_crash"} and tight.body_b64 is None
    roomy = bulk.execute(make_request(wat_guests["echo"], "/echo", method="POST", body=body, limits={"memory_mb": 8}))
    assert roomy.error is None and body_of(roomy) == body


@pytest.fixture(scope="module")
def notes_guests(compiled_dir: Path) -> dict[str, str]:
    """The SDK example guests (componentize-py and componentize-js builds, cached)."""
    from tests.sdk.conftest import BUILDERS, compiled_into

    return {lang: compiled_into(build(), compiled_dir) for lang, build in BUILDERS.items()}


NOTES_BODIES = [b"1", b"{}", json.dumps({"s": "é 日本 🙂"}).encode(), b"not json",
                json.dumps({"s": "x" * (64 << 10)}).encode(), json.dumps({"s": "é" * (MIB // 2 - 16)}).encode()]


@pytest.mark.parametrize("body", NOTES_BODIES, ids=_id)
@pytest.mark.parametrize("lang", ["python", "js"])
def test_sdk_example_guests_behave_the_same(compiled_dir: Path, runners: tuple[Runner, Runner],
                                            notes_guests: dict[str, str], lang: str, body: bytes) -> None:
    content_hash = notes_guests[lang]
    report = load_report(compiled_dir, content_hash)
    assert report is not None and report.bulk_export == FAST_EXPORT
    resp = _both(runners, content_hash, "/echo", body, headers={"content-type": "application/json"})
    if body != b"not json":
        assert resp["status"] == 200
        assert json.loads(base64.b64decode(str(resp["body_b64"]))) == {"received": json.loads(body)}


# --- the encoding and the layout -------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 7, 4095, 4096, 4097])
def test_codec_round_trip(n: int) -> None:
    data = os.urandom(n)
    text = codec.radix64_from_bytes(data)
    assert all(0x30 <= ord(c) < 0x70 for c in text) and len(text) % 4 != 1
    b64, size = codec.base64_from_radix64(text)
    assert b64 == base64.b64encode(data).decode() and size == n
    assert codec.bytes_from_radix64(text) == data


@pytest.mark.parametrize("text", ["0", "00000", "p000", "00 0", "0é00", "01", "003"])
def test_codec_rejects_text_no_adapter_writes(text: str) -> None:
    with pytest.raises(codec.MalformedBodyText):
        codec.base64_from_radix64(text)


def test_offsets_come_from_the_wit(tmp_path: Path) -> None:
    layout = plan_layout(has_post_return=True)
    assert (layout.request_body.discriminant, layout.request_body.pointer, layout.request_body.length) == (76, 80, 84)
    assert (layout.response_body.discriminant, layout.response_body.pointer) == (12, 16)
    assert (layout.response_size, layout.response_align) == (24, 4)
    # A world with one more u64 field before `body` moves it (and its alignment) accordingly.
    wit = abi.WIT_PATH.read_text().replace("record execute-response {\n    status: u16,",
                                            "record execute-response {\n    status: u16,\n    extra: u64,")
    changed = tmp_path / "extension.wit"
    changed.write_text(wit)
    response = abi.world_records(changed)["execute-response"]
    assert abi.field_offset(response, "body")[0] == 24 and abi.alignment(response) == 8


# --- components published before the transform -------------------------------------------------------


def test_earlier_artifacts_serve_plain_until_rebuilt(tmp_path: Path, keyring: Keyring) -> None:
    from wasmtime.component import Component

    from runner.engine import get_engine

    data = wat_bytes("odd_echo")
    compiled = tmp_path / "compiled"
    runner = make_runner(tmp_path, compiled, keyring, runner_rebuild_outdated_artifacts=False)
    try:
        content_hash = runner.bundle_store.put(b"archive of odd_echo", data)
        # An artifact from before the transform: the untransformed component at the old
        # layout (no transform directory), its report without the bulk fields.
        report = compile_component(data, compiled, content_hash=content_hash)
        doc = json.loads(Path(report.artifact).with_suffix(".json").read_text())
        for key in ("bulk_export", "transform_version", "bulk_note"):
            doc.pop(key)
        Path(report.artifact).unlink()
        Path(report.artifact).with_suffix(".json").unlink()
        legacy = artifact_path(compiled, content_hash, transform_version=0)
        legacy.write_bytes(Component(get_engine().engine, data).serialize())
        legacy.with_suffix(".json").write_text(json.dumps(doc))
        assert outdated_artifacts(compiled) == [content_hash]

        body = RNG.randbytes(4097)
        resp = runner.execute(make_request(content_hash, "/echo", method="POST", body=body))
        assert resp.error is None and body_of(resp) == body  # served at once, never compiled on this path
        assert runner.components.get_with_export(content_hash)[1] is None
        assert content_hash in runner.components.outdated

        outcomes = rebuild_outdated(compiled, runner.bundle_store.component_path, on_done=runner.components.evict)
        assert outcomes == [(content_hash, f"bulk ({FAST_EXPORT})")]
        assert outdated_artifacts(compiled) == []
        resp = runner.execute(make_request(content_hash, "/echo", method="POST", body=body))
        assert resp.error is None and body_of(resp) == body
        assert runner.components.get_with_export(content_hash)[1] == FAST_EXPORT
    finally:
        runner.close()
