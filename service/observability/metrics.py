"""Prometheus metrics of the gateway process (`extgate_*`), served at `GET /metrics`.

Cardinality is bounded by construction: route classes, methods and status classes are
closed sets, error codes are our own constants, policy actions and outcomes are fixed
words. No tenant, user, request id, path, body or secret is ever a label, except in the
`extgate_tenant_*` series of tenants an operator lists in `EXTGATE_METRICS_TENANTS`.

The runner's (`runner.metrics`) and the audit writer's (`audit.metrics`) families share the
process registry, so an embedded-runner gateway exposes them at the same endpoint.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import audit.metrics  # noqa: F401 - registers the audit writer's families
import runner.metrics  # noqa: F401 - registers the runner's families (embedded runner, debug lines)

if TYPE_CHECKING:
    from service.container import ServiceContainer

# Requests take sub-millisecond (health) to the gateway's full deadline (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DECISION_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)

# (path prefix, route class): the first match wins, so longer prefixes come first.
ROUTE_CLASSES: tuple[tuple[str, str], ...] = (
    ("/api/ext-debug/", "debug"),
    ("/api/ext/", "gateway"),
    ("/api/admin/", "admin"),
    ("/api/policy/", "policy"),
    ("/api/audit/", "audit"),
    ("/healthz", "health"),
    ("/readyz", "health"),
    ("/metrics", "metrics"),
    ("/docs", "docs"),
    ("/redoc", "docs"),
    ("/openapi.json", "docs"),
    ("/console", "console"),
)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Key of the request's error code in the ASGI scope's state (set by whoever answers with one).
ERROR_CODE_KEY = "extgate_error_code"
# Key of the caller's tenant (set by the gateway once the install is resolved).
TENANT_KEY = "extgate_tenant"
NO_ERROR = "none"

HTTP_REQUESTS = Counter(
    "extgate_http_requests", "HTTP requests answered, by route class, method, status class and error code.",
    ["route_class", "method", "status_class", "code"],
)
HTTP_SECONDS = Histogram(
    "extgate_http_request_duration_seconds", "Time from the request's arrival to its response's start.",
    ["route_class", "method"], buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter(
    "extgate_policy_decisions", "Cedar decisions, by action (invoke, debug_view, admin) and outcome.",
    ["action", "outcome"],
)
DECISION_SECONDS = Histogram(
    "extgate_policy_decision_duration_seconds", "Time of one Cedar decision (entities and evaluation).",
    ["action"], buckets=DECISION_BUCKETS,
)
POLICY_ACTIVATIONS = Counter(
    "extgate_policy_activations", "Policy revisions activated by this process (reloaded, rolled_back).", ["kind"],
)
POLICY_REJECTIONS = Counter("extgate_policy_rejections", "Policy reloads or rollbacks refused (policy.rejected).")
RATE_LIMITED = Counter("extgate_gateway_rate_limited", "Extension calls refused with 429 rate_limited.")
IDEMPOTENT_REPLAYS = Counter(
    "extgate_gateway_idempotent_replays", "Extension calls answered from the idempotency store.",
)
TENANT_CALLS = Counter(
    "extgate_tenant_gateway_calls", "Extension calls of allowlisted tenants (EXTGATE_METRICS_TENANTS).",
    ["tenant", "status_class"],
)


# Label children by label values: `labels()` validates and locks on every call; a dict lookup
# does not. The keys are the bounded label sets above, so these stay small.
_LATENCY_CHILDREN: dict[tuple[str, str], Any] = {}
_REQUEST_CHILDREN: dict[tuple[str, str, str, str], Any] = {}


def _latency(kind: str, method: str) -> Any:
    child = _LATENCY_CHILDREN.get((kind, method))
    if child is None:
        child = _LATENCY_CHILDREN[(kind, method)] = HTTP_SECONDS.labels(kind, method)
    return child


def _requests(kind: str, method: str, status: str, code: str) -> Any:
    key = (kind, method, status, code)
    child = _REQUEST_CHILDREN.get(key)
    if child is None:
        child = _REQUEST_CHILDREN[key] = HTTP_REQUESTS.labels(*key)
    return child


def route_class(path: str) -> str:
    for prefix, name in ROUTE_CLASSES:
        if path.startswith(prefix):
            return name
    return "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def set_error_code(scope: Scope, code: str) -> None:
    """Name the error code of this request's answer in its metrics (a stable code, never text)."""
    state = scope.get("state")
    if isinstance(state, dict):
        state[ERROR_CODE_KEY] = code


def set_tenant(scope: Scope, tenant: str) -> None:
    """The call's tenant, counted in `extgate_tenant_*` only when allowlisted."""
    state = scope.get("state")
    if isinstance(state, dict):
        state[TENANT_KEY] = tenant


def record_decision(action: str, decision: Any, seconds: float) -> None:
    outcome = "allow" if decision.allowed else ("error" if decision.errors else "deny")
    DECISIONS.labels(action, outcome).inc()
    DECISION_SECONDS.labels(action).observe(seconds)


def policy_metrics_hook(kind: str, revision: str | None, detail: dict[str, Any]) -> None:
    """`PolicyService.on_event` hook: counts activations and rejections (never fails)."""
    if kind.endswith("rejected"):
        POLICY_REJECTIONS.inc()
    else:
        POLICY_ACTIVATIONS.labels(kind.removeprefix("policy.")).inc()


class HttpMetricsMiddleware:
    """Pure ASGI, outermost of ours: counts every HTTP request and its time to first byte."""

    def __init__(self, app: ASGIApp, *, tenants: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.tenants = tenants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        answered = False

        def count(status: int) -> None:
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            kind = route_class(scope["path"])
            _latency(kind, method).observe(time.perf_counter() - started)
            code = state.get(ERROR_CODE_KEY) or (NO_ERROR if status < 400 else "unknown")
            _requests(kind, method, status_class(status), code).inc()
            tenant = state.get(TENANT_KEY)
            if tenant is not None and tenant in self.tenants:
                TENANT_CALLS.labels(tenant, status_class(status)).inc()

        async def send_and_count(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        except Exception:
            # Unhandled: the server's error middleware (outside this one) answers 500.
            if not answered:
                state.setdefault(ERROR_CODE_KEY, "internal_error")
                count(500)
            raise


class _ServiceStateCollector(Collector):
    """The active policy revision and debug sessions, read when scraped."""

    def __init__(self) -> None:
        self.services: weakref.ReferenceType[ServiceContainer] | None = None

    def collect(self) -> Iterator[Any]:
        services = self.services() if self.services is not None else None
        if services is None:
            return
        policy = services.policy
        if policy is not None:
            info = InfoMetricFamily("extgate_policy_active_revision", "The policy revision this process serves.")
            info.add_metric([], {"revision": policy.revision})
            yield info
            loaded = GaugeMetricFamily("extgate_policy_bundle_loaded", "1 when a valid policy bundle is loaded.")
            loaded.add_metric([], 0.0 if policy.bundle is None else 1.0)
            yield loaded
        debug = services.debug
        if debug is not None:
            hub = getattr(debug, "_hub", None)  # created with the first viewer: none means none open
            viewers = GaugeMetricFamily("extgate_debug_streams_open", "Debug streams read by this process now.")
            viewers.add_metric([], hub.reader_count() if hub is not None else 0)
            yield viewers


_SERVICE_STATE = _ServiceStateCollector()
REGISTRY.register(_SERVICE_STATE)


def watch_services(services: ServiceContainer) -> None:
    _SERVICE_STATE.services = weakref.ref(services)
