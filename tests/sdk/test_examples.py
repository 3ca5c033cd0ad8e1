"""Both notes examples (Python and JavaScript, written with the guest SDKs) built and run
through the runner: the same requests must give the same answers in both languages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.contract.envelope import Keyring, seal
from runner.executor import Runner
from tests.runner.conftest import body_of, make_request

pytestmark = pytest.mark.slow

LANGUAGE = {"python": "python", "js": "javascript"}
CAPS = ["cap:secrets.get", "cap:storage.kv"]


def call(runner: Runner, content_hash: str, path: str, *, method: str = "GET", body: bytes | None = None,
         install: str = "i1", providers: list[str] | None = None, **extra: Any) -> tuple[int, Any]:
    resp = runner.execute(make_request(content_hash, path, method=method, body=body, install=install,
                                       providers=CAPS if providers is None else providers, **extra))
    assert resp.error is None, resp.error
    raw = body_of(resp)
    return resp.status, json.loads(raw) if raw else None


def test_hello_reads_config(sdk_runner: Runner, example: tuple[str, str]) -> None:
    lang, h = example
    assert call(sdk_runner, h, "/hello", config={"greeting": "Moin"}) == (
        200, {"message": "Moin", "tenant": "t1", "language": LANGUAGE[lang]})
    assert call(sdk_runner, h, "/hello")[1]["message"] == "Hello"  # default when not configured


def test_secret_errors_are_typed(sdk_runner: Runner, example: tuple[str, str], sdk_keyring: Keyring) -> None:
    _, h = example

    def status(**kw: Any) -> str:
        return call(sdk_runner, h, "/status", **kw)[1]["api_key"]

    env = seal({"api-key": "k-123456"}, keyring=sdk_keyring, tenant_id="t1", install_id="i1", version="s1")
    assert status(secret_envelope=env.model_dump(mode="json")) == "present"
    assert status() == "secret_missing"  # granted, but nothing set
    assert status(providers=[], secret_envelope=env.model_dump(mode="json")) == "secret_denied"
    expired = seal({"api-key": "v"}, keyring=sdk_keyring, tenant_id="t1", install_id="i1", version="s2",
                   expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert status(secret_envelope=expired.model_dump(mode="json")) == "secret_expired"


def test_notes_crud_and_isolation(sdk_runner: Runner, example: tuple[str, str]) -> None:
    lang, h = example
    install = f"notes-{lang}"  # a fresh KV scope per language
    assert call(sdk_runner, h, "/notes", install=install) == (200, {"notes": []})
    put = call(sdk_runner, h, "/notes/n1", method="PUT", body=b'{"text": "hello"}', install=install)
    assert put == (200, {"id": "n1", "revision": 1, "text": "hello"})
    assert call(sdk_runner, h, "/notes/n1", install=install) == put
    # optimistic concurrency through the SDK's JSON body + host storage revision
    stale = call(sdk_runner, h, "/notes/n1", method="PUT", body=b'{"text": "x", "revision": 7}', install=install)
    assert stale == (409, {"error": "storage_conflict", "message": "storage conflict"})
    assert call(sdk_runner, h, "/notes", install=install)[1]["notes"] == [put[1]]
    # another install of the same tenant sees nothing of it
    assert call(sdk_runner, h, "/notes/n1", install=install + "-other")[0] == 404
    assert call(sdk_runner, h, "/notes/n1", method="DELETE", install=install) == (204, None)
    assert call(sdk_runner, h, "/notes/n1", install=install)[1]["error"] == "storage_missing"


def test_validation_and_routing(sdk_runner: Runner, example: tuple[str, str]) -> None:
    _, h = example
    status, body = call(sdk_runner, h, "/notes/n1", method="PUT", body=b"{nope")
    assert status == 400 and body["error"] == "invalid_json"
    status, body = call(sdk_runner, h, "/notes/n1", method="PUT", body=b'{"text": ""}')
    assert (status, body["error"]) == (422, "invalid_note")
    status, body = call(sdk_runner, h, "/notes/n1", method="PUT", body=b'{"text": "too long"}',
                        config={"max-note-length": "3"})
    assert (status, body["error"], body["limit"]) == (422, "note_too_long", 3)
    status, body = call(sdk_runner, h, "/notes/n1", method="PUT", body=b'{"text": "abc"}',
                        config={"max-note-length": "three"})
    assert (status, body["error"], body["key"]) == (500, "config_invalid", "max-note-length")
    assert call(sdk_runner, h, "/hello", method="POST")[0] == 405
    assert call(sdk_runner, h, "/missing")[1]["error"] == "route_not_found"
    assert call(sdk_runner, h, "/echo", method="POST", body=b'{"a": [1, "x"]}') == (
        200, {"received": {"a": [1, "x"]}})


def test_storage_denied_without_capability(sdk_runner: Runner, example: tuple[str, str]) -> None:
    _, h = example
    assert call(sdk_runner, h, "/notes", providers=[]) == (
        403, {"error": "storage_denied", "message": "storage denied"})
