"""The runner transport: one interface, with backends beside it.

`InProcessTransport` calls an embedded `runner.executor.Runner` (the default);
`HttpRunnerTransport` (transport_http.py) posts to `extgate runner serve` processes.
Both return the runner's `ExecuteResponse` or raise one of the errors below, which the
gateway maps to 503 `runner_unavailable` (`RunnersDown`: no runner reachable), 502
`bad_gateway` (any other `RunnerUnavailable`) and 504 `gateway_timeout`. Nothing the runner says
in free text travels further than a log line here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from runner.contract.execute import ExecuteRequest, ExecuteResponse

if TYPE_CHECKING:
    from runner.executor import Runner


class RunnerUnavailable(Exception):
    """No runner could be reached, or a runner answered something that is not a result."""


class RunnersDown(RunnerUnavailable):
    """No runner accepted the connection: nothing was delivered, an outage (503, retry)."""


class RunnerTimeout(Exception):
    """The runner did not answer before the deadline."""


class RunnerTransport(Protocol):
    name: str

    async def execute(
        self, request: ExecuteRequest, headers: Mapping[str, str], *, deadline_s: float
    ) -> ExecuteResponse:
        """`deadline_s`: how long to wait in total, including the runner's own timeout."""
        ...

    async def aclose(self) -> None: ...


class InProcessTransport:
    """The embedded runner, created on first use (its engine and threads cost memory)."""

    name = "in-process"

    def __init__(self, factory: Callable[[], Runner]) -> None:
        self._factory = factory
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    self._runner = self._factory()
        return self._runner

    async def execute(
        self, request: ExecuteRequest, headers: Mapping[str, str], *, deadline_s: float
    ) -> ExecuteResponse:
        # The runner applies the deadline itself (answering `timeout`, a 504 like
        # RunnerTimeout): no wrapping task per call.
        try:
            return await self.runner.execute_async(request, headers, deadline_s=deadline_s)
        except Exception as exc:  # the runner answers errors as codes; anything else is a bug
            raise RunnerUnavailable(type(exc).__name__) from exc

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
