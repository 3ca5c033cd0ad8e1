"""extgate demo extension (Python, built with componentize-py).

A small JSON API that exercises every host interface of the `alga:extension` world plus
extgate's optional `extgate:extension/config`. Secret *values* are never returned or
printed: `/secret-check` answers only whether a key is present.

Routes (path after the extension prefix):
  GET  /hello               greeting with the execute context
  POST /echo                echoes the request body and content type
  GET  /config              the install config (extgate:extension/config)
  GET  /secret-check?key=K  {"present": bool} or the secret-error code
  GET  /kv/NS               list entries of a namespace
  GET  /kv/NS/KEY           read one entry
  PUT  /kv/NS/KEY[?revision=N]  write (optimistic concurrency when revision is given)
  DELETE /kv/NS/KEY         delete
  GET  /fetch?url=U         outbound HTTP through the host (allowlisted)
  GET  /user                user + user-v2
  GET  /probe               calls every interface once and reports ok / error code
  GET  /log                 logging calls plus stdout/stderr lines
  GET  /big?n=N             N bytes of response body
  test-only faults: /loop, /oom, /crash
"""

from __future__ import annotations

import json
import sys
from urllib.parse import parse_qsl, urlsplit

import wit_world
from componentize_py_types import Err
from wit_world.imports import (
    clients,
    config,
    context,
    http,
    invoicing,
    logging,
    scheduler,
    secrets,
    services,
    storage,
    types,
    ui_proxy,
    user,
    user_v2,
)


def _code(err: Err) -> str:
    value = err.value
    name = getattr(value, "name", None)
    return name.lower().replace("_", "-") if isinstance(name, str) else str(value)


def _json(status: int, payload: object) -> types.ExecuteResponse:
    body = json.dumps(payload, sort_keys=True).encode()
    return types.ExecuteResponse(
        status=status, headers=[types.HttpHeader("content-type", "application/json")], body=body
    )


def _entry(e: types.StorageEntry) -> dict[str, object]:
    return {"namespace": e.namespace, "key": e.key, "value": e.value.decode("utf-8", "replace"),
            "revision": e.revision}


def _call(fn, *args):  # type: ignore[no-untyped-def]
    """Run one host call and describe the outcome without leaking values."""
    try:
        fn(*args)
        return "ok"
    except Err as err:
        return "err:" + _code(err)


def probe() -> dict[str, str]:
    out: dict[str, str] = {}
    out["context"] = "ok" if context.get_context().tenant_id else "empty"
    out["config"] = "ok" if isinstance(config.list_all(), list) else "bad"
    out["secrets"] = _call(secrets.get, "api_key")
    out["secrets.list"] = "ok" if secrets.list_keys() else "empty"
    out["http"] = _call(http.fetch, types.HttpRequest("GET", "https://api.example.com/x", [], None))
    out["storage"] = _call(storage.put, types.StorageEntry("probe", "k", b"v", None))
    out["ui-proxy"] = _call(ui_proxy.call_route, "/api/ping", None)
    out["user"] = _call(user.get_user)
    out["user-v2"] = _call(user_v2.get_user)
    out["scheduler"] = _call(scheduler.list_schedules)
    created = scheduler.create_schedule(
        types.CreateScheduleInput("/hello", "0 * * * *", None, None, None, None))
    out["scheduler.create"] = "ok" if created.success else "fail:" + (created.error or "")
    out["clients"] = _call(clients.list_clients, types.ClientsListInput(None, None, None, None))
    out["services"] = _call(services.list_services,
                            types.ServicesListInput(None, None, None, None, None, None))
    inv = invoicing.create_manual_invoice(types.CreateManualInvoiceInput(
        "c1", [types.ManualInvoiceItemInput("s1", 1.0, "demo", 10.0, None, None, None, None)],
        None, None, None))
    out["invoicing"] = "ok" if inv.success else "fail:" + (inv.error or "")
    logging.log_info("probe done")
    return out


class WitWorld(wit_world.WitWorld):
    def handler(self, request: types.ExecuteRequest) -> types.ExecuteResponse:
        req = request.http
        parts = urlsplit(req.url)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query))
        segs = [s for s in path.split("/") if s]
        method = req.method.upper()

        if path == "/hello":
            ctx = context.get_context()
            return _json(200, {"message": "hello from the extgate demo", "tenant": ctx.tenant_id,
                               "extension": ctx.extension_id, "install": ctx.install_id,
                               "request_id": ctx.request_id})
        if path == "/echo":
            ctype = next((h.value for h in req.headers if h.name.lower() == "content-type"),
                         "application/octet-stream")
            return types.ExecuteResponse(200, [types.HttpHeader("content-type", ctype)], req.body or b"")
        if path == "/config":
            return _json(200, dict(config.list_all()))
        if path == "/secret-check":
            try:
                secrets.get(query.get("key", ""))
                return _json(200, {"key": query.get("key", ""), "present": True})
            except Err as err:
                return _json(200, {"key": query.get("key", ""), "present": False, "error": _code(err)})
        if segs[:1] == ["kv"] and len(segs) in (2, 3):
            return kv(method, segs, query, req.body)
        if path == "/fetch":
            try:
                resp = http.fetch(types.HttpRequest("GET", query.get("url", ""), [], None))
                return _json(200, {"status": resp.status, "length": len(resp.body or b"")})
            except Err as err:
                return _json(502, {"error": _code(err)})
        if path == "/user":
            out: dict[str, object] = {}
            try:
                u = user.get_user()
                out["user"] = {"id": u.user_id, "email": u.user_email, "type": u.user_type}
            except Err as err:
                out["user"] = {"error": _code(err)}
            try:
                u2 = user_v2.get_user()
                out["user_v2"] = {"client_id": u2.client_id, "fields": dict(u2.additional_fields)}
            except Err as err:
                out["user_v2"] = {"error": _code(err)}
            return _json(200, out)
        if path == "/probe":
            return _json(200, probe())
        if path == "/log":
            logging.log_info("info line")
            logging.log_warn("warn line")
            logging.log_error("error line")
            print("stdout line 1\nstdout line 2")
            print("stderr line", file=sys.stderr)
            return _json(200, {"logged": True})
        if path == "/big":
            return types.ExecuteResponse(200, [], b"b" * int(query.get("n", "0")))
        if path == "/loop":
            while True:
                pass
        if path == "/oom":
            hog = []
            while True:
                hog.append(bytearray(8 << 20))
        if path == "/crash":
            raise RuntimeError("deliberate crash")
        return _json(404, {"error": "no such route", "path": path})


def kv(method: str, segs: list[str], query: dict[str, str], body: bytes | None) -> types.ExecuteResponse:
    ns = segs[1]
    try:
        if len(segs) == 2:
            entries = storage.list_entries(ns, query.get("cursor"))
            return _json(200, {"entries": [_entry(e) for e in entries]})
        key = segs[2]
        if method == "GET":
            return _json(200, _entry(storage.get(ns, key)))
        if method == "PUT":
            rev = int(query["revision"]) if "revision" in query else None
            return _json(200, _entry(storage.put(types.StorageEntry(ns, key, body or b"", rev))))
        if method == "DELETE":
            storage.delete(ns, key)
            return _json(200, {"deleted": key})
        return _json(405, {"error": "method not allowed"})
    except Err as err:
        code = _code(err)
        status = {"missing": 404, "conflict": 409, "denied": 403}.get(code, 500)
        return _json(status, {"error": code})
