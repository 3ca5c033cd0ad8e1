"""Debug-stream publisher settings (`EXTGATE_DEBUG_*`, Redis from `EXTGATE_REDIS_URL`).

Defaults follow the live-tail limits in DESIGN §8 / notes B5: 1,000 entries per stream,
15 min expiry, 200 lines/s per install (burst 1,000), a 10,000-line queue,
a 500-line / 256 KiB ring per install while Redis is down. Lines are cut at
`EXTGATE_RUNNER_OUTPUT_MAX_LINE_BYTES` by the runner, after masking.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.contract.redis_url import check_redis_url


class DebugPublisherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTGATE_DEBUG_", extra="ignore", populate_by_name=True)

    # Unset: the in-process hub (embedded default). EXTGATE_DEBUG_REDIS_URL wins over
    # EXTGATE_REDIS_URL so debug streams can use a dedicated Redis.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("EXTGATE_DEBUG_REDIS_URL", "EXTGATE_REDIS_URL")
    )
    enabled: bool = True
    key_prefix: str = Field(default="dbg:v1", pattern=r"^[A-Za-z0-9:_.-]{1,32}$")

    @field_validator("redis_url")
    @classmethod
    def _supported_redis_url(cls, value: str | None) -> str | None:
        return check_redis_url(value, "EXTGATE_DEBUG_REDIS_URL / EXTGATE_REDIS_URL")
    stream_maxlen: int = Field(default=1000, ge=10, le=1_000_000)
    stream_ttl_s: int = Field(default=900, ge=10)

    queue_size: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    rate_per_s: float = Field(default=200.0, gt=0)
    rate_burst: int = Field(default=1000, ge=1)

    ring_lines: int = Field(default=500, ge=0)
    ring_bytes: int = Field(default=256 * 1024, ge=0)
    ring_max_streams: int = Field(default=1024, ge=1)

    # Short timeouts and no client retries: the circuit breaker decides when to try again.
    connect_timeout_s: float = Field(default=0.5, gt=0)
    socket_timeout_s: float = Field(default=1.0, gt=0)
    breaker_min_s: float = Field(default=1.0, gt=0)
    breaker_max_s: float = Field(default=30.0, gt=0)
