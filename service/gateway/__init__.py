"""The extension gateway: `/api/ext/{extension}/{path}` → policy, audit, runner.

Modules, one concern each: `matcher` (declared endpoints), `installs` (lookups around the
audit record), `pipeline` (the fail-closed order of checks), `execute` (the runner request),
`headers` (allowlists), `transport` / `transport_http` / `rendezvous` (runner backends),
`ratelimit`, `idempotency` (in-process and Redis backends), `cors`, `config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.gateway.config import GatewaySettings
from service.gateway.idempotency import IdempotencyStore, InProcessIdempotencyStore, RedisIdempotencyStore
from service.gateway.pipeline import Gateway
from service.gateway.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from service.gateway.transport import InProcessTransport, RunnerTransport
from service.gateway.transport_http import HttpRunnerTransport

if TYPE_CHECKING:
    from runner.executor import Runner
    from service.container import ServiceContainer

__all__ = ["Gateway", "GatewaySettings", "build_gateway", "embedded_runner"]


def embedded_runner(services: ServiceContainer) -> Runner:
    """The in-process runner, sharing the service's keyring, bundle store and database."""
    from runner.executor import Runner
    from runner.settings import RunnerSettings
    from runner.storage.sql import SqlKVStore

    s = services.settings
    runner_settings = RunnerSettings(
        data_dir=s.data_dir,
        database_url=s.effective_database_url,
        runner_create_tables=False,  # the service's migrations own the KV table
    )
    return Runner(
        runner_settings,
        keyring=services.keyring,
        bundle_store=services.bundle_store,
        kv_store=SqlKVStore(services.db.engine),
    )


def build_gateway(
    services: ServiceContainer,
    settings: GatewaySettings | None = None,
    *,
    transport: RunnerTransport | None = None,
    limiter: RateLimiter | None = None,
    idempotency: IdempotencyStore | None = None,
) -> Gateway:
    gs = settings or GatewaySettings()
    s = services.settings
    if transport is None:
        if s.runner_urls:
            transport = HttpRunnerTransport(
                s.runner_urls,
                s.effective_runner_token,
                connect_timeout_s=gs.runner_connect_timeout_ms / 1000,
                max_connections=gs.runner_max_connections,
                down_cooldown_s=gs.runner_down_cooldown_ms / 1000,
            )
        else:
            transport = InProcessTransport(lambda: embedded_runner(services))
    if limiter is None:
        limiter = (
            RedisRateLimiter(s.redis_url, gs.rate_limit_burst, gs.rate_limit_per_second)
            if s.redis_url
            else InProcessRateLimiter(gs.rate_limit_burst, gs.rate_limit_per_second,
                                      max_buckets=gs.rate_limit_max_buckets)
        )
    if idempotency is None:
        idempotency = (
            RedisIdempotencyStore(s.redis_url, gs.idempotency_ttl_seconds)
            if s.redis_url
            else InProcessIdempotencyStore(gs.idempotency_ttl_seconds, gs.idempotency_max_entries)
        )
    return Gateway(services, gs, transport=transport, limiter=limiter, idempotency=idempotency)
