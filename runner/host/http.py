"""alga:extension/http — outbound HTTP, deny-by-default.

Allowed only with `cap:http.fetch` and only to hosts on the install's egress allowlist
(exact host, or a subdomain of an entry). An empty allowlist denies everything. Redirects
are never followed (a 3xx is returned to the guest as is, so a redirect cannot escape the
allowlist). The call blocks the guest and epochs cannot interrupt host code, so the
timeout is the smaller of the fetch cap and the request's remaining deadline, and the
response body is read incrementally up to a size cap.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import HTTP_FETCH
from runner.egress import EgressBlocked
from runner.host.state import CallState, current
from runner.host.values import field, rec
from runner.tracing import traced

INTERFACE = "alga:extension/http"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Headers the guest may not set: they belong to the connection, not the request.
_DROP_REQUEST_HEADERS = frozenset({"host", "connection", "content-length", "transfer-encoding", "upgrade",
                                   "proxy-authorization", "te", "trailer", "keep-alive"})
_MIN_TIMEOUT_S = 0.05

log = logging.getLogger(__name__)


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    if not host:
        return False
    for entry in allowlist:
        entry = entry.strip().lower().rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def _check_url(url: str, state: CallState) -> str | None:
    """None if the URL may be fetched, else the http-error to answer."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        return "invalid-url"
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return "invalid-url"
    if not host_allowed(parts.hostname, state.egress_hosts):
        return "not-allowed"
    return None


def fetch(_store: Any, request: Record) -> Record | str:
    state = current()
    if not state.has(HTTP_FETCH):
        return "not-allowed"
    method = str(field(request, "method")).upper()
    url = str(field(request, "url"))
    if method not in METHODS:
        return "invalid-url"
    problem = _check_url(url, state)
    if problem:
        return problem
    body = field(request, "body")
    if body is not None and len(body) > state.settings.runner_fetch_max_request_bytes:
        return "not-allowed"
    timeout = min(state.settings.runner_fetch_max_timeout_ms / 1000, state.remaining_s())
    if timeout < _MIN_TIMEOUT_S:
        return "transport"
    headers = [(field(h, "name"), field(h, "value")) for h in field(request, "headers")]
    headers = [(n, v) for n, v in headers if n.lower() not in _DROP_REQUEST_HEADERS]
    cap = state.settings.runner_fetch_max_response_bytes
    try:
        with state.http_client.stream(method, url, headers=headers, content=body,
                                      timeout=httpx.Timeout(timeout), follow_redirects=False) as resp:
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > cap:
                    return "transport"
                chunks.append(chunk)
            out_headers = [rec(name=k.lower(), value=v) for k, v in resp.headers.multi_items()]
            return rec(status=resp.status_code, headers=out_headers, body=b"".join(chunks))
    except EgressBlocked:
        log.warning("http.fetch refused: %s resolves only to non-public addresses", urlsplit(url).hostname)
        return "not-allowed"
    except httpx.TransportError:
        return "transport"
    except Exception:  # noqa: BLE001 - never trap the guest for a host-side failure
        log.exception("http.fetch failed inside the host")
        return "internal"


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("fetch", traced("extgate.host.http.fetch")(fetch))
