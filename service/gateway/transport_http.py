"""Remote runners over HTTP (`EXTGATE_RUNNER_URL`, one or several base URLs).

One pooled `httpx.AsyncClient` (keep-alive connections per runner). For each request
the runners are ranked by rendezvous hash of the content hash; a runner that refuses the
connection (or answers `overloaded`, i.e. did not start the guest) is marked down for a
short cooldown and the next one is tried. Once a request has been delivered it is never
sent again (the guest may have run), so a runner dying mid-run is a 502 for that request
only; the next request goes to the next runner in rank. All runners down → 503
`runner_unavailable` (an outage: nothing was delivered); deadline passed → 504.

Each runner schedules fairly across tenants itself (runner/scheduler.py). A `runner_busy`
answer (the tenant's share of that runner is in use) goes back to the client as a 503 at
once: it is not spilled onto the next runner, which would hand a noisy tenant the share of
every runner in turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import httpx
from pydantic import ValidationError

from runner.contract.execute import ExecuteRequest, ExecuteResponse, RunnerError
from service.gateway.loopbound import PerLoop
from service.gateway.rendezvous import rank
from service.gateway.transport import RunnersDown, RunnerTimeout, RunnerUnavailable

log = logging.getLogger("extgate.gateway.runner")


class HttpRunnerTransport:
    name = "http"

    def __init__(
        self,
        urls: list[str],
        token: str,
        *,
        connect_timeout_s: float = 1.0,
        max_connections: int = 64,
        down_cooldown_s: float = 2.0,
    ) -> None:
        if not urls:
            raise ValueError("at least one runner URL is required")
        self.urls = [u.rstrip("/") for u in urls]
        self._auth = f"Bearer {token}"
        self._connect_timeout = connect_timeout_s
        self._cooldown = down_cooldown_s
        self._down_until: dict[str, float] = {}

        def make() -> httpx.AsyncClient:
            n = len(self.urls)
            return httpx.AsyncClient(
                limits=httpx.Limits(max_connections=max_connections * n, max_keepalive_connections=max_connections * n),
                follow_redirects=False,
                trust_env=False,  # a proxy variable must not reroute the service credential
            )

        async def close(client: httpx.AsyncClient) -> None:
            await client.aclose()

        self._clients: PerLoop[httpx.AsyncClient] = PerLoop(make, close)

    def order(self, content_hash: str, now: float | None = None) -> list[str]:
        ranked = rank(self.urls, content_hash)
        t = time.monotonic() if now is None else now
        up = [u for u in ranked if self._down_until.get(u, 0.0) <= t]
        return up + [u for u in ranked if u not in up]  # down ones last, still tried

    def _mark_down(self, url: str) -> None:
        self._down_until[url] = time.monotonic() + self._cooldown

    async def execute(
        self, request: ExecuteRequest, headers: Mapping[str, str], *, deadline_s: float
    ) -> ExecuteResponse:
        client = self._clients.get()
        body = request.model_dump_json(exclude_none=True).encode()
        send_headers = {**headers, "authorization": self._auth, "content-type": "application/json"}
        deadline = time.monotonic() + deadline_s
        rid = request.context.request_id
        overloaded: ExecuteResponse | None = None
        for url in self.order(request.context.content_hash):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunnerTimeout()
            timeout = httpx.Timeout(remaining, connect=min(self._connect_timeout, remaining))
            try:
                resp = await client.post(f"{url}/v1/execute", content=body, headers=send_headers, timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                # Never delivered: safe to try the next runner.
                log.warning("runner %s unreachable (request %s); trying the next", url, rid)
                self._mark_down(url)
                continue
            except httpx.TimeoutException:
                raise RunnerTimeout() from None
            except httpx.HTTPError as exc:
                # Delivered, then lost (runner killed mid-run, connection reset): the guest
                # may have run, so this request is not retried elsewhere.
                log.warning("runner %s failed mid-request %s: %s", url, rid, type(exc).__name__)
                self._mark_down(url)
                raise RunnerUnavailable(type(exc).__name__) from None
            if resp.status_code != 200:
                # A transport refusal (credential, routing, size): a deployment problem. The
                # runner's body is not logged, only the status.
                log.error("runner %s refused request %s with HTTP %d", url, rid, resp.status_code)
                raise RunnerUnavailable(f"http_{resp.status_code}")
            try:
                result = ExecuteResponse.model_validate_json(resp.content)
            except ValidationError:
                log.error("runner %s sent an invalid response to request %s", url, rid)
                raise RunnerUnavailable("invalid_response") from None
            if result.error == RunnerError.OVERLOADED.value:
                log.warning("runner %s overloaded (request %s); trying the next", url, rid)
                overloaded = result
                continue
            return result
        if overloaded is not None:
            return overloaded  # every runner is busy: the gateway answers 503 + retry-after
        raise RunnersDown("all_runners_down")

    async def aclose(self) -> None:
        await self._clients.aclose_current()
