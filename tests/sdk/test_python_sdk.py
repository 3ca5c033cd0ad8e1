"""Unit tests of the Python guest SDK (sdk/python/extgate_sdk), on the host interpreter.

`extgate_sdk.guest` needs componentize-py's generated bindings, so it is exercised by
tests/sdk/test_examples.py through real components instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))

from extgate_sdk import (  # noqa: E402 - after the path insert
    App,
    Config,
    ConfigInvalid,
    ConfigMissing,
    HttpError,
    Request,
    Response,
    SecretDenied,
    SecretExpired,
    SecretMissing,
    Secrets,
    empty_response,
    json_response,
)


def make_app() -> App:
    app = App()

    @app.get("/items")
    def list_items(req: Request) -> object:
        return {"items": [], "q": req.query.get("q")}

    @app.get("/items/:id")
    def get_item(req: Request) -> object:
        return {"id": req.params["id"]}

    @app.put("/items/:id")
    def put_item(req: Request) -> object:
        return json_response({"id": req.params["id"], "doc": req.json_object()}, 201)

    @app.delete("/items/:id")
    def delete_item(req: Request) -> object:
        return None

    @app.get("/items/:id/parts/:part")
    def part(req: Request) -> object:
        return dict(req.params)

    @app.get("/boom")
    def boom(req: Request) -> object:
        raise RuntimeError("secret-ish internal detail")

    @app.get("/teapot")
    def teapot(req: Request) -> object:
        raise HttpError(418, "teapot", "short and stout", size="small")

    @app.get("/needs-config")
    def needs(req: Request) -> object:
        return {"n": Config.from_dict({}).require("region")}

    return app


def call(app: App, method: str, url: str, body: bytes = b"") -> tuple[int, dict[str, str], object]:
    resp = app.handle(Request(method, url, {"Content-Type": "application/json"}, body))
    return resp.status, resp.headers, json.loads(resp.body) if resp.body else None


def test_routes_match_like_the_gateway() -> None:
    app = make_app()
    assert call(app, "GET", "/items?q=a+b&q=ignored") == (200, {"content-type": "application/json"},
                                                          {"items": [], "q": "a b"})
    assert call(app, "GET", "/items/42")[2] == {"id": "42"}
    assert call(app, "GET", "//items//42/")[2] == {"id": "42"}  # normalised like manifest paths
    assert call(app, "GET", "/items/a%20b")[2] == {"id": "a b"}  # params are percent-decoded
    assert call(app, "GET", "/items/1/parts/x")[2] == {"id": "1", "part": "x"}
    # a :param never matches an absent segment; segment counts must be equal
    assert call(app, "GET", "/items/1/parts")[0] == 404


def test_unknown_route_and_wrong_method() -> None:
    app = make_app()
    status, _, body = call(app, "GET", "/nope")
    assert status == 404 and body["error"] == "route_not_found"  # type: ignore[index]
    status, headers, body = call(app, "POST", "/items/1")
    assert status == 405 and headers["allow"] == "DELETE, GET, PUT"
    assert body["error"] == "method_not_allowed"  # type: ignore[index]


def test_head_uses_get_route_without_body() -> None:
    resp = make_app().handle(Request("HEAD", "/items/1"))
    assert resp.status == 200 and resp.body == b"" and resp.headers["content-type"] == "application/json"


def test_json_body_helpers() -> None:
    app = make_app()
    assert call(app, "PUT", "/items/1", b'{"a": 1}') == (201, {"content-type": "application/json"},
                                                         {"id": "1", "doc": {"a": 1}})
    for bad in (b"", b"{nope", b"[1]", b"\xff"):
        status, _, body = call(app, "PUT", "/items/1", bad)
        assert status == 400, bad
        assert body["error"] in ("invalid_json", "invalid_body")  # type: ignore[index]


def test_handler_results_and_errors() -> None:
    app = make_app()
    assert app.handle(Request("DELETE", "/items/1")).status == 204
    assert call(app, "GET", "/teapot") == (418, {"content-type": "application/json"},
                                           {"error": "teapot", "message": "short and stout", "size": "small"})
    status, _, body = call(app, "GET", "/needs-config")
    assert status == 500 and body == {"error": "config_missing", "key": "region",  # type: ignore[comparison-overlap]
                                      "message": "config key 'region' is not set for this install"}


def test_unhandled_exception_is_500_without_detail(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, body = call(make_app(), "GET", "/boom")
    assert status == 500 and body == {"error": "internal_error", "message": "internal error"}
    assert "secret-ish internal detail" in capsys.readouterr().err  # goes to the debug stream only


def test_route_registration_is_validated() -> None:
    app = App()
    with pytest.raises(ValueError, match="method"):
        app.route("HEAD", "/x")
    with pytest.raises(ValueError, match="start with"):
        app.route("GET", "x")


def test_config_typed_reads() -> None:
    cfg = Config.from_dict({"n": " 7 ", "flag": "Yes", "bad": "seven", "doc": '{"a": [1]}', "s": "v"})
    assert cfg.get("s") == "v" and cfg.get("absent") is None and cfg.get("absent", "d") == "d"
    assert cfg.get_int("n") == 7 and cfg.get_int("absent", 3) == 3
    assert cfg.get_bool("flag") is True and cfg.get_bool("absent", False) is False
    assert cfg.get_json("doc") == {"a": [1]}
    assert cfg.as_dict()["s"] == "v"
    with pytest.raises(ConfigMissing) as missing:
        cfg.get_int("absent")
    assert missing.value.key == "absent" and missing.value.code == "config_missing"
    with pytest.raises(ConfigInvalid, match="an integer"):
        cfg.get_int("bad")
    with pytest.raises(ConfigInvalid, match="boolean"):
        cfg.get_bool("bad")
    with pytest.raises(ConfigInvalid, match="JSON"):
        cfg.get_json("bad")


def test_secrets_typed_errors_never_carry_values() -> None:
    secrets = Secrets.from_dict({"api-key": "s3cr3t"})
    assert secrets.get("api-key") == "s3cr3t" and secrets.keys() == ["api-key"]
    assert secrets.get_optional("other") is None
    with pytest.raises(SecretMissing) as exc:
        secrets.get("other")
    assert exc.value.to_json() == {"error": "secret_missing", "key": "other",
                                   "message": "secret 'other' is not set for this install"}

    def denied(key: str) -> str:
        raise SecretDenied(key)

    with pytest.raises(SecretDenied):
        Secrets(denied, list).get_optional("api-key")  # only "missing" becomes None
    assert "s3cr3t" not in json.dumps(SecretExpired("api-key").to_json())


def test_response_helpers() -> None:
    assert empty_response().status == 204
    r = json_response({"ü": 1}, 202, {"x-a": "b"})
    assert isinstance(r, Response) and r.status == 202 and r.headers["x-a"] == "b"
    assert json.loads(r.body) == {"ü": 1}
