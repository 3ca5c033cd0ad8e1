"""Notes: an extgate example extension in Python, written with the extgate guest SDK.

Every tenant install keeps its own notes in the host's key-value storage
(`cap:storage.kv`); the greeting comes from the install config, and `/status` reports
whether the `api-key` secret is usable without ever returning it.

Build: `make -C examples python-notes` (componentize-py 0.25.1, world `runner-ext`).
"""

from __future__ import annotations

import json

from componentize_py_types import Err
from extgate_sdk import App, HttpError, Request, SecretError, empty_response, json_response
from extgate_sdk.guest import config, context, error_code, secrets, world
from wit_world.imports import storage, types

NAMESPACE = "notes"
app = App()


def _storage_error(err: Err) -> HttpError:
    code = error_code(err)
    status = {"missing": 404, "conflict": 409, "denied": 403}.get(code, 500)
    return HttpError(status, f"storage_{code.replace('-', '_')}")


def _note(entry: types.StorageEntry) -> dict[str, object]:
    return {"id": entry.key, "revision": entry.revision, **json.loads(entry.value)}


@app.get("/hello")
def hello(req: Request) -> dict[str, object]:
    ctx = context()
    return {"message": config().get("greeting", "Hello"), "tenant": ctx.tenant_id, "language": "python"}


@app.get("/status")
def status(req: Request) -> dict[str, object]:
    # Report presence and the typed reason, never the value.
    try:
        secrets().get("api-key")
        return {"api_key": "present"}
    except SecretError as exc:
        return {"api_key": exc.code}


@app.get("/notes")
def list_notes(req: Request) -> dict[str, object]:
    try:
        entries = storage.list_entries(NAMESPACE, req.query.get("cursor"))
    except Err as err:
        raise _storage_error(err) from None
    return {"notes": [_note(e) for e in entries]}


@app.get("/notes/:id")
def get_note(req: Request) -> dict[str, object]:
    try:
        return _note(storage.get(NAMESPACE, req.params["id"]))
    except Err as err:
        raise _storage_error(err) from None


@app.put("/notes/:id")
def put_note(req: Request) -> dict[str, object]:
    doc = req.json_object()
    text = doc.get("text")
    if not isinstance(text, str) or not text:
        raise HttpError(422, "invalid_note", "field 'text' must be a non-empty string")
    max_len = config().get_int("max-note-length", 1000)
    if len(text) > max_len:
        raise HttpError(422, "note_too_long", f"at most {max_len} characters", limit=max_len)
    value = json.dumps({"text": text}).encode()
    revision = doc.get("revision")  # optimistic concurrency: 0 = create only
    try:
        entry = storage.put(types.StorageEntry(NAMESPACE, req.params["id"], value,
                                               revision if isinstance(revision, int) else None))
    except Err as err:
        raise _storage_error(err) from None
    return _note(entry)


@app.delete("/notes/:id")
def delete_note(req: Request) -> object:
    try:
        storage.delete(NAMESPACE, req.params["id"])
    except Err as err:
        raise _storage_error(err) from None
    return empty_response(204)


@app.post("/echo")
def echo(req: Request) -> object:
    return json_response({"received": req.json()})


WitWorld = world(app)
