"""Debug-session settings (`EXTGATE_DEBUG_*`). Defaults follow notes B5: one-time tickets
valid 60 s, sessions of at most 60 min, 10 viewers per stream and 25 per tenant."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.contract.redis_url import check_redis_url


class DebugSessionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTGATE_DEBUG_", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("EXTGATE_DEBUG_REDIS_URL", "EXTGATE_REDIS_URL")
    )
    key_prefix: str = Field(default="dbg:v1", pattern=r"^[A-Za-z0-9:_.-]{1,32}$")

    @field_validator("redis_url")
    @classmethod
    def _supported_redis_url(cls, value: str | None) -> str | None:
        return check_redis_url(value, "EXTGATE_DEBUG_REDIS_URL / EXTGATE_REDIS_URL")

    ticket_ttl_s: int = Field(default=60, ge=5, le=600)
    max_session_s: float = Field(default=3600.0, gt=0, le=24 * 3600)
    max_viewers_per_stream: int = Field(default=10, ge=1)
    max_sessions_per_tenant: int = Field(default=25, ge=1)
    # How often a live session re-checks the policy, the install and its capability.
    revalidate_s: float = Field(default=5.0, gt=0)
    lease_s: float = Field(default=60.0, ge=5)

    viewer_queue: int = Field(default=1000, ge=10)
    backlog_lines: int = Field(default=100, ge=0, le=1000)
    heartbeat_s: float = Field(default=15.0, gt=0)
    retry_ms: int = Field(default=3000, ge=100)
    send_timeout_s: float = Field(default=10.0, gt=0)

    read_block_ms: int = Field(default=5000, ge=10)
    read_count: int = Field(default=500, ge=1)
    connect_timeout_s: float = Field(default=1.0, gt=0)
    # Must exceed the XREAD block time, or every idle read ends in a timeout.
    socket_timeout_s: float = Field(default=10.0, gt=0)
    retry_backoff_s: float = Field(default=1.0, gt=0)
