"""`/readyz` checks beyond the database (`service.api.health` runs them by name).

Each probe answers `{"ok": bool, ...state}` and is bounded in time (about a second), so a
readiness probe never hangs on a dead dependency. Error texts never leave the process: a
failed probe names the exception's class only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from service.observability.metrics import policy_metrics_hook, watch_services

if TYPE_CHECKING:
    from service.container import ServiceContainer

Probe = Callable[[], dict[str, Any]]
PROBE_TIMEOUT_S = 1.0


def policy_probe(services: ServiceContainer) -> Probe:
    def probe() -> dict[str, Any]:
        policy = services.policy
        loaded = policy is not None and policy.bundle is not None
        state: dict[str, Any] = {"ok": loaded, "revision": policy.revision if policy is not None and loaded else None}
        if not loaded:
            state["reason"] = "no valid policy bundle loaded: every request is denied"
        return state

    return probe


def audit_writer_probe(services: ServiceContainer) -> Probe:
    def probe() -> dict[str, Any]:
        audit = services.audit
        healthy = getattr(audit, "writer_healthy", None)
        if audit is None or healthy is None:
            return {"ok": False, "reason": "no audit log"}
        ok = bool(healthy())
        state: dict[str, Any] = {"ok": ok, "queue_depth": audit.queue_depth()}
        if not ok:
            state["reason"] = "audit writer stopped, full or failing"
        return state

    return probe


def redis_probe(url: str) -> Probe:
    def probe() -> dict[str, Any]:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
        return {"ok": True}

    return probe


def runners_probe(urls: list[str]) -> Probe:
    """Ready when at least one runner answers its `/healthz` (the gateway fails over to it)."""

    def probe() -> dict[str, Any]:
        for url in urls:
            try:
                if httpx.get(f"{url}/healthz", timeout=PROBE_TIMEOUT_S / 2).status_code == 200:
                    return {"ok": True, "configured": len(urls)}
            except httpx.HTTPError:
                continue
        return {"ok": False, "configured": len(urls), "reason": "no runner answers /healthz"}

    return probe


def register_observability(services: ServiceContainer) -> None:
    """Readiness probes, metrics of the policy service, scrape-time state of this container."""
    probes: dict[str, Probe] = services.extras.setdefault("readiness_probes", {})
    probes["policy"] = policy_probe(services)
    probes["audit_writer"] = audit_writer_probe(services)
    settings = services.settings
    if settings.redis_url:
        probes["redis"] = redis_probe(settings.redis_url)
    if settings.runner_urls:
        probes["runners"] = runners_probe(settings.runner_urls)
    if services.policy is not None:
        services.policy.on_event(policy_metrics_hook)
    watch_services(services)
