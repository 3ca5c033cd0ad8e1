"""Gateway settings (`EXTGATE_GATEWAY_*`), separate from the service's core settings.

Where the gateway talks to Redis and runners comes from `service.settings.Settings`
(`EXTGATE_REDIS_URL`, `EXTGATE_RUNNER_URL`, `EXTGATE_RUNNER_TOKEN`); this class holds the
gateway's own knobs. Every variable is documented in `docs/configuration.md`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTGATE_GATEWAY_", extra="ignore")

    # Deadline of one extension call; also sent to the runner as `limits.timeout_ms`.
    timeout_ms: int = Field(default=30_000, gt=0, le=600_000)
    # How long a call may wait for a runner worker before a fast 503 `runner_busy` (sent as
    # `limits.admission_timeout_ms`; the runner clamps it to EXTGATE_RUNNER_ADMISSION_TIMEOUT_MS).
    # `timeout_ms` starts when the guest starts.
    admission_timeout_ms: int = Field(default=1_000, gt=0, le=60_000)
    # Extra time the transport waits past the deadline for the runner's own `timeout` answer.
    timeout_grace_ms: int = Field(default=2_000, ge=0)
    memory_mb: int | None = Field(default=None, gt=0, description="limits.memory_mb; unset: runner default")
    max_body_bytes: int = Field(default=10 * MIB, gt=0)

    # Token bucket per tenant + install (upstream default: 60 burst, 1 token/s).
    rate_limit_burst: int = Field(default=60, gt=0)
    rate_limit_per_second: float = Field(default=1.0, gt=0)
    rate_limit_max_buckets: int = Field(default=100_000, gt=0, description="in-process backend only")

    idempotency_ttl_seconds: int = Field(default=600, gt=0)
    idempotency_max_entries: int = Field(default=10_000, gt=0, description="in-process backend only")
    idempotency_max_response_bytes: int = Field(default=2 * MIB, gt=0)

    # CORS: exact origins only (e.g. "https://app.example.com"); empty = no CORS headers at all.
    cors_origins: str = ""
    cors_allow_credentials: bool = False
    cors_max_age_seconds: int = 600

    # Remote runners (EXTGATE_RUNNER_URL)
    runner_connect_timeout_ms: int = Field(default=1_000, gt=0)
    runner_max_connections: int = Field(default=64, gt=0, description="per runner URL")
    runner_down_cooldown_ms: int = Field(default=2_000, ge=0)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]
