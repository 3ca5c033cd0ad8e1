"""Request and response models of the admin API (and the shared error model)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.db.models import Install, InstallConfig, InstallSecrets


class ErrorBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": "forbidden", "detail": {"action": "read"}}]})

    error: str = Field(description="stable machine-readable error code", examples=["install_not_found"])
    detail: Any = Field(default=None, description="human-oriented detail; never contains secret values")


# A typical code per status, shown as the response example.
EXAMPLE_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "version_conflict",
    413: "payload_too_large", 422: "invalid_request", 429: "rate_limited", 431: "request_header_fields_too_large",
    502: "bad_gateway", 503: "audit_unavailable", 504: "gateway_timeout",
}
RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "string", "pattern": "^[0-9]+$"}}


def error_example(status: int, code: str | None = None) -> dict[str, Any]:
    return {"application/json": {"example": {"error": code or EXAMPLE_CODES.get(status, "error")}}}


# Answered by middleware before routing, so possible on every operation (declared app-wide).
APP_RESPONSES: dict[int | str, dict[str, Any]] = {
    431: {"model": ErrorBody, "description": "headers over 32 KiB or 100 fields", "content": error_example(431)},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Declared error responses; 400 (unparseable request) and 503 (a dependency is down)
    are possible on every operation."""
    statuses = tuple(sorted({400, 503, *statuses}))
    descriptions = {
        400: "the request could not be parsed (e.g. malformed JSON or encoding)",
        401: "missing or invalid bearer token",
        403: "the policy does not allow this",
        404: "not found (or not visible to this tenant)",
        409: "conflicts with the current state",
        413: "payload too large",
        422: "invalid input",
        503: "a dependency (database, Redis, runner, policy engine, audit log) is unavailable: "
             "`service_unavailable` with `detail.dependency`, or the endpoint's own code; retry later",
    }
    return {
        s: {"model": ErrorBody, "description": descriptions.get(s, "error"), "content": error_example(s)}
        for s in statuses
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointOut(BaseModel):
    method: str
    path: str
    handler: str


class VersionOut(BaseModel):
    id: str
    version: str
    runtime: str
    capabilities: list[str]
    endpoints: list[EndpointOut]
    content_hash: str | None = None
    created_at: datetime


class ExtensionOut(BaseModel):
    id: str
    slug: str
    publisher: str
    name: str
    versions: list[VersionOut]


class PublishOut(BaseModel):
    extension_id: str
    slug: str
    version_id: str
    version: str
    content_hash: str
    size_bytes: int
    signer_key_id: str | None
    created: bool


class InstallCreate(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "extension": "acme.com.acme.tickets", "granted_capabilities": ["cap:context.read", "cap:secrets.get"],
        "egress_allowlist": ["api.acme.example"],
    }]})

    extension: str = Field(min_length=1, max_length=401, description="extension id or slug publisher.name")
    version: str | None = Field(default=None, max_length=128, description="SemVer; default the latest")
    granted_capabilities: list[str] = Field(max_length=32, description="must be declared by the version")
    egress_allowlist: list[str] = Field(default_factory=list, max_length=64)
    enabled: bool = True


class InstallPatch(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"granted_capabilities": ["cap:context.read"]}]})

    granted_capabilities: list[str] | None = Field(default=None, max_length=32)
    egress_allowlist: list[str] | None = Field(default=None, max_length=64)


class InstallUpgrade(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"version": "1.2.0", "approved_capabilities": ["cap:context.read", "cap:storage.kv"]}]})

    version: str | None = Field(default=None, max_length=128, description="target SemVer; default the latest")
    approved_capabilities: list[str] | None = Field(
        default=None, max_length=32, description="the complete new grant, when the target asks for more"
    )


class InstallOut(BaseModel):
    id: str
    tenant_id: str
    extension_id: str
    version_id: str
    granted_capabilities: list[str]
    egress_allowlist: list[str]
    enabled: bool
    status: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Install) -> InstallOut:
        return cls.model_validate(row, from_attributes=True)


class ConfigWrite(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"values": {"region": "eu", "greeting": "hello"}}]})

    values: dict[str, str] = Field(description="the complete config map (replaces the current one)")
    expected_version: str | None = Field(
        default=None, max_length=36, description="refuse with 409 if the current version differs"
    )


class ConfigOut(BaseModel):
    install_id: str
    values: dict[str, str]
    version: str | None
    updated_at: datetime | None

    @classmethod
    def of(cls, install_id: str, row: InstallConfig | None) -> ConfigOut:
        if row is None:
            return cls(install_id=install_id, values={}, version=None, updated_at=None)
        return cls(install_id=install_id, values=row.values, version=row.version, updated_at=row.updated_at)


class SecretsWrite(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"secrets": {"api_key": "<the secret value>", "old_token": None}, "expires_at": "2027-01-01T00:00:00Z"}]})

    secrets: dict[str, str | None] = Field(description="keys to set; null deletes a key")
    expires_at: datetime | None = Field(default=None, description="optional expiry of the whole envelope")


class SecretsOut(BaseModel):
    install_id: str
    key_names: list[str]
    version: str | None
    key_id: str | None
    expires_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, install_id: str, row: InstallSecrets | None) -> SecretsOut:
        if row is None:
            return cls(install_id=install_id, key_names=[], version=None, key_id=None, expires_at=None, updated_at=None)
        return cls(
            install_id=install_id,
            key_names=row.key_names,
            version=row.version,
            key_id=row.key_id,
            expires_at=row.expires_at,
            updated_at=row.updated_at,
        )
