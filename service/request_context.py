"""The request being served, for code deep in a request (audit records of refusals).

Set by `service.api.request_id.RequestIdMiddleware` for each HTTP request: our request id
and the client's address as uvicorn resolved it (X-Forwarded-For believed only from the
proxies in EXTGATE_FORWARDED_ALLOW_IPS). Outside a request both are None.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import NamedTuple


class RequestInfo(NamedTuple):
    request_id: str | None
    client_ip: str | None


_NO_REQUEST = RequestInfo(None, None)
_CURRENT: ContextVar[RequestInfo] = ContextVar("extgate_request")


def current_request() -> RequestInfo:
    return _CURRENT.get(_NO_REQUEST)


def enter_request(request_id: str, client_ip: str | None) -> Token[RequestInfo]:
    return _CURRENT.set(RequestInfo(request_id, client_ip))


def leave_request(token: Token[RequestInfo]) -> None:
    _CURRENT.reset(token)
