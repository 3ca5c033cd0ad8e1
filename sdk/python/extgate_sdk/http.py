"""Request and response values independent of the generated bindings (unit-testable on
the host; `extgate_sdk.guest` converts to and from the WIT records)."""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from .errors import HttpError


@dataclass(frozen=True)
class Context:
    """`context-data` of the current call (who is calling which install)."""

    tenant_id: str = ""
    extension_id: str = ""
    install_id: str | None = None
    version_id: str | None = None
    request_id: str | None = None


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""
    context: Context = field(default_factory=Context)
    params: dict[str, str] = field(default_factory=dict)  # filled by the router

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self.headers = {k.lower(): v for k, v in self.headers.items()}
        # Split by hand: urlsplit() would read "//a/b" as host "a" (the url is a path + query).
        path, _, query = self.url.partition("?")
        self.path = normalize_path(path)
        # First value wins: the gateway forwards the query as a string map anyway.
        self.query: dict[str, str] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            self.query.setdefault(k, v)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "invalid_body", "request body is not UTF-8") from None

    def json(self) -> Any:
        """The body parsed as JSON; a 400 `invalid_json` HttpError when it is not."""
        if not self.body:
            raise HttpError(400, "invalid_json", "request body is empty; JSON expected")
        try:
            return _json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, "invalid_json", f"request body is not JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        """Like `json()` but the document must be an object."""
        doc = self.json()
        if not isinstance(doc, dict):
            raise HttpError(400, "invalid_json", "request body must be a JSON object")
        return doc


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = _json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, {"content-type": "application/json", **(headers or {})}, body)


def text_response(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, {"content-type": content_type}, text.encode())


def empty_response(status: int = 204) -> Response:
    return Response(status, {}, b"")


def error_response(status: int, code: str, message: str = "", **detail: object) -> Response:
    return json_response(HttpError(status, code, message, **detail).to_json(), status)


def normalize_path(path: str) -> str:
    """Collapse repeated slashes and drop a trailing one, as the manifest validator does."""
    segs = [s for s in path.split("/") if s]
    return "/" + "/".join(segs)


def split_path(path: str) -> list[str]:
    return [unquote(s) for s in normalize_path(path).split("/") if s]
