"""Prometheus metrics of the runner (embedded in the gateway, or `extgate runner serve`).

Every family is prefixed `extgate_runner_` or `extgate_debug_`. Labels are closed sets
(`RunnerError` codes, fixed stage names); no metric carries a tenant, user, request id,
body or secret, except the per-tenant queue depth of the tenants an operator lists in
`EXTGATE_METRICS_TENANTS` (all others are summed under `tenant="other"`).

Values that are state rather than events (queue depths, the debug publisher's counters, the
Redis breaker) are read when Prometheus scrapes, from the runner and publisher that
registered last in this process (`watch_runner`, `watch_debug_publisher`), so the hot path
pays nothing for them.
"""

from __future__ import annotations

import hmac
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from runner.contract.observability import ObservabilitySettings

if TYPE_CHECKING:
    from runner.contract.execute import ExecuteResponse
    from runner.debug.publisher import DebugPublisher
    from runner.executor import Runner

OTHER_TENANTS = "other"

# Guest calls take milliseconds to seconds; instantiation is sub-millisecond once cached.
_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_FUEL_BUCKETS = (1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10)

CALLS = Counter(
    "extgate_runner_calls", "Calls answered by the runner, by outcome (ok or the RunnerError code).", ["outcome"],
)
CALL_SECONDS = Histogram(
    "extgate_runner_call_duration_seconds", "Time in the guest's handler (after instantiation).",
    buckets=_CALL_BUCKETS,
)
INSTANTIATE_SECONDS = Histogram(
    "extgate_runner_instantiate_duration_seconds", "Time to instantiate a loaded component for one call.",
    buckets=_CALL_BUCKETS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "extgate_runner_queue_wait_seconds", "Time an admitted call waited for a guest thread.",
    buckets=_CALL_BUCKETS,
)
FUEL_CONSUMED = Histogram(
    "extgate_runner_fuel_consumed", "Fuel one call consumed (only when EXTGATE_RUNNER_FUEL is on).",
    buckets=_FUEL_BUCKETS,
)
ARTIFACT_CACHE = Counter(
    "extgate_runner_artifact_cache", "Compiled-artifact lookups: hit (loaded or in memory) or miss (not compiled).",
    ["result"],
)
DEBUG_LINES_MASKED = Counter(
    "extgate_debug_lines_masked", "Debug lines in which at least one secret value was masked.",
)

_HIT = ARTIFACT_CACHE.labels("hit")
_MISS = ARTIFACT_CACHE.labels("miss")


def record_call(outcome: str) -> None:
    CALLS.labels(outcome).inc()


def counted(response: ExecuteResponse) -> ExecuteResponse:
    """`response`, counted by its outcome (`ok` or its error code)."""
    CALLS.labels(response.error or "ok").inc()
    return response


def record_artifact_lookup(hit: bool) -> None:
    (_HIT if hit else _MISS).inc()


def tenant_allowlist() -> frozenset[str]:
    """Tenants that get their own series (`EXTGATE_METRICS_TENANTS`, comma-separated)."""
    return ObservabilitySettings().tenant_allowlist


def per_tenant(values: dict[str, int], allowed: frozenset[str]) -> dict[str, int]:
    """`values` by tenant, folded so that only allowlisted tenants keep their own label."""
    out: dict[str, int] = {}
    for tenant, value in values.items():
        label = tenant if tenant in allowed else OTHER_TENANTS
        out[label] = out.get(label, 0) + value
    return out


class _RunnerStateCollector(Collector):
    def __init__(self) -> None:
        self.runner: weakref.ReferenceType[Runner] | None = None
        self.publisher: weakref.ReferenceType[DebugPublisher] | None = None
        self.allowed = tenant_allowlist()

    def collect(self) -> Iterator[Any]:
        runner = self.runner() if self.runner is not None else None
        if runner is not None:
            depth = GaugeMetricFamily("extgate_runner_queue_depth",
                                      "Calls waiting for a guest thread (tenant: allowlisted, else other).",
                                      labels=["tenant"])
            waiting = per_tenant(runner.queue_depths(), self.allowed)
            depth.add_metric([OTHER_TENANTS], waiting.pop(OTHER_TENANTS, 0))
            for tenant, count in sorted(waiting.items()):
                depth.add_metric([tenant], count)
            yield depth
            running = GaugeMetricFamily("extgate_runner_running", "Calls running in guest threads now.")
            running.add_metric([], sum(runner.scheduler.running().values()))
            yield running
            threads = GaugeMetricFamily("extgate_runner_threads", "Guest threads of this process.")
            threads.add_metric([], runner.settings.effective_threads)
            yield threads
        publisher = self.publisher() if self.publisher is not None else None
        if publisher is not None:
            yield from _publisher_families(publisher)


def _publisher_families(publisher: DebugPublisher) -> Iterable[Any]:
    stats = publisher.stats
    published = CounterMetricFamily("extgate_debug_lines_published",
                                    "Debug lines written to the stream (Redis or in-process).")
    published.add_metric([], stats.written)
    yield published
    dropped = CounterMetricFamily("extgate_debug_lines_dropped", "Debug lines dropped, by reason.",
                                  labels=["reason"])
    dropped.add_metric(["rate_limit"], stats.dropped_rate)
    dropped.add_metric(["queue_full"], stats.dropped_queue)
    dropped.add_metric(["ring_full"], stats.dropped_ring)
    yield dropped
    failures = CounterMetricFamily("extgate_debug_write_failures", "Failed writes of debug lines to Redis.")
    failures.add_metric([], stats.write_failures)
    yield failures
    down = GaugeMetricFamily("extgate_debug_redis_fallback",
                             "1 while Redis is unreachable and debug lines are kept in the local ring.")
    down.add_metric([], 1.0 if publisher.breaker.is_open else 0.0)
    yield down


_STATE = _RunnerStateCollector()
REGISTRY.register(_STATE)


def watch_runner(runner: Runner) -> None:
    """Report this runner's queue depths when scraped (the latest runner of the process)."""
    _STATE.runner = weakref.ref(runner)
    _STATE.allowed = tenant_allowlist()


def watch_debug_publisher(publisher: DebugPublisher) -> None:
    _STATE.publisher = weakref.ref(publisher)


def exposition(authorization: str, token: str | None) -> tuple[int, bytes, str]:
    """(status, body, content type) of `GET /metrics`: the registry in the text format, or
    401 when a token is configured and the request does not present it."""
    if token is not None:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            return 401, b'{"error":"unauthenticated"}', "application/json"
    return 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
