"""Method + path routing with `:param` segments, the same rule the gateway applies to
manifest endpoints (equal segment counts, `:param` matches one non-empty segment, first
match wins) so a route declared in `manifest.json` and in code match the same requests."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ExtgateError
from .http import Request, Response, empty_response, error_response, json_response, normalize_path, split_path

Handler = Callable[[Request], Response | dict[str, object] | list[object]]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
log = logging.getLogger("extgate_sdk")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    segments: tuple[str, ...]
    handler: Handler

    def match(self, segs: list[str]) -> dict[str, str] | None:
        if len(segs) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.segments, segs, strict=True):
            if want.startswith(":"):
                if not got:
                    return None
                params[want[1:]] = got
            elif want != got:
                return None
        return params


class App:
    """Collects routes and turns a `Request` into a `Response`.

    A handler may return a `Response`, or a dict/list that becomes a 200 JSON response.
    `HttpError`, `ConfigError` and `SecretError` raised by a handler become JSON error
    bodies; any other exception becomes a 500 `internal_error` whose text goes to stderr
    (the operator's debug stream), never to the caller.
    """

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/', got {pattern!r}")
        segments = tuple(s for s in normalize_path(pattern).split("/") if s)

        def register(fn: Handler) -> Handler:
            self.routes.append(Route(method, normalize_path(pattern), segments, fn))
            return fn

        return register

    def get(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("GET", pattern)

    def post(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("POST", pattern)

    def put(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("PUT", pattern)

    def patch(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("PATCH", pattern)

    def delete(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("DELETE", pattern)

    def handle(self, request: Request) -> Response:
        # HEAD is authorised as GET by the gateway; answer it with the GET route, no body.
        method = "GET" if request.method == "HEAD" else request.method
        segs = split_path(request.path)
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(segs)
            if params is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            request.params = params
            response = self._call(route, request)
            if request.method == "HEAD":
                response.body = b""
            return response
        if allowed:
            resp = error_response(405, "method_not_allowed", f"{request.method} is not allowed here")
            resp.headers["allow"] = ", ".join(sorted(set(allowed)))
            return resp
        return error_response(404, "route_not_found", f"no route for {request.method} {request.path}")

    def _call(self, route: Route, request: Request) -> Response:
        try:
            result = route.handler(request)
        except ExtgateError as exc:
            return json_response(exc.to_json(), exc.status)
        except Exception as exc:  # noqa: BLE001 - a guest must answer, not trap
            print(f"extgate_sdk: unhandled {type(exc).__name__} in {route.method} {route.pattern}: {exc}",
                  file=sys.stderr)
            return error_response(500, "internal_error")
        if isinstance(result, Response):
            return result
        if result is None:
            return empty_response()
        return json_response(result)
