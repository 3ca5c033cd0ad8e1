"""`ext publish` says whether a component's bodies cross in bulk (issue 18): the default
component validator returns the compile report's one-line summary, and the publish result
carries it as `bulk_bodies`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from wasmtime import wat2wasm

from service.container import default_component_validator
from service.registry.publishing import PublishResult
from service.settings import Settings

GUESTS = Path(__file__).resolve().parents[1] / "runner" / "guests"


def _wasm(name: str) -> bytes:
    return bytes(wat2wasm((GUESTS / f"{name}.wat").read_text()))


def test_validator_names_the_path(tmp_path: Path) -> None:
    validate = default_component_validator(Settings(data_dir=tmp_path))
    echo, mismatch = _wasm("echo"), _wasm("string_body")
    assert validate(echo, "sha256:" + hashlib.sha256(echo).hexdigest()) == "bulk (handler-b64)"
    note = validate(mismatch, "sha256:" + hashlib.sha256(mismatch).hexdigest())
    assert note is not None and note.startswith("plain (`handler` types differ")


def test_publish_result_prints_it_only_when_known() -> None:
    fields = ("e", "s", "v", "1.0.0", "sha256:" + "0" * 64, 1, None, True)
    assert "bulk_bodies" not in PublishResult(*fields).as_dict()
    assert PublishResult(*fields, "bulk (handler-b64)").as_dict()["bulk_bodies"] == "bulk (handler-b64)"
