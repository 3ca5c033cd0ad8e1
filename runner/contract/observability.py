"""Observability settings shared by the gateway and `extgate runner serve`.

Tracing is not configured here: it would take only the standard `OTEL_*` variables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ObservabilitySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTGATE_", extra="ignore")

    log_level: str = Field(default="INFO", description="level of extgate's own log lines")
    log_format: Literal["text", "json"] = Field(default="text", description="one JSON object per line with json")
    metrics_enabled: bool = Field(default=True, description="serve GET /metrics and count HTTP requests")
    metrics_token: str | None = Field(
        default=None, description="when set, GET /metrics requires `Authorization: Bearer <token>`"
    )
    metrics_tenants: str | None = Field(
        default=None, description="comma-separated tenants that get their own per-tenant series"
    )

    @property
    def tenant_allowlist(self) -> frozenset[str]:
        return frozenset(t.strip() for t in (self.metrics_tenants or "").split(",") if t.strip())
