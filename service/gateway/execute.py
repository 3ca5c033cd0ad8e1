"""Build the runner's execute request and transport headers (DESIGN.md §4).

Body: `context {request_id, tenant_id, extension_id, install_id, version_id, content_hash,
config}`, `http {method, path, query, headers, body_b64}`, `limits`, `providers` (the
install's effective grant: declared ∩ granted + always-granted), `secret_envelope` (sealed;
opened only in the runner), `user`, and extgate's `egress.allowed_hosts`.
Transport headers: `x-request-id`, `x-alga-tenant`, `x-alga-extension`,
`x-ext-install-id`, `x-ext-version-id`, `x-ext-config-version`, `x-ext-secrets-version`
(the version headers only when a config / secrets row exists), `x-idempotency-key` for
non-GET calls that carry one. The service credential is added by the HTTP backend.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.contract import execute as ex
from runner.contract.capabilities import effective_grant
from runner.contract.envelope import SecretEnvelope
from runner.contract.execute import EgressPolicy, ExecuteContext, ExecuteRequest, HttpPayload, Limits, UserInfo
from service.auth.principal import Principal
from service.gateway.installs import InstallInfo, InstallMaterial


@dataclass(frozen=True, slots=True)
class CallInput:
    request_id: str
    method: str  # as sent by the client (HEAD stays HEAD for the guest)
    path: str  # "/a/b", always with a leading slash
    query: dict[str, str]
    headers: dict[str, str]  # already filtered to the guest allowlist
    body: bytes
    idempotency_key: str | None


def egress_hosts(allowlist: tuple[str, ...]) -> list[str]:
    """The registry stores `host` or `*.domain`; the runner's entries admit a host and its
    subdomains, so `*.domain` is sent as `domain`."""
    return sorted({h[2:] if h.startswith("*.") else h for h in allowlist if h})


def user_info(principal: Principal) -> UserInfo:
    extra = principal.extra or {}
    client_id = extra.get("client_id")
    client_name = extra.get("client_name")
    return UserInfo(
        user_id=principal.subject,
        user_email=principal.email or "",
        user_name=principal.name or "",
        user_type=principal.user_type,
        client_id=client_id if isinstance(client_id, str) else None,
        client_name=client_name if isinstance(client_name, str) else "",
    )


def build_execute(
    call: CallInput,
    principal: Principal,
    install: InstallInfo,
    material: InstallMaterial,
    *,
    timeout_ms: int,
    memory_mb: int | None,
    admission_timeout_ms: int | None = None,
) -> tuple[ExecuteRequest, dict[str, str]]:
    envelope = SecretEnvelope.model_validate(material.envelope) if material.envelope else None
    request = ExecuteRequest(
        context=ExecuteContext(
            request_id=call.request_id,
            tenant_id=install.tenant_id,
            extension_id=install.extension_id,
            install_id=install.install_id,
            version_id=install.version_id,
            content_hash=install.content_hash,
            config=material.config,
        ),
        http=HttpPayload(
            method=call.method,
            path=call.path,
            query=call.query,
            headers=call.headers,
            body_b64=base64.b64encode(call.body).decode() if call.body else None,
        ),
        limits=Limits(timeout_ms=timeout_ms, memory_mb=memory_mb, admission_timeout_ms=admission_timeout_ms),
        providers=effective_grant(install.declared_capabilities, install.granted_capabilities),
        secret_envelope=envelope,
        user=user_info(principal),
        egress=EgressPolicy(allowed_hosts=egress_hosts(install.egress_allowlist)),
    )
    return request, transport_headers(call, install, material, envelope)


def transport_headers(
    call: CallInput, install: InstallInfo, material: InstallMaterial, envelope: SecretEnvelope | None
) -> dict[str, str]:
    headers: dict[str, str] = {
        ex.H_REQUEST_ID: call.request_id,
        ex.H_TENANT: install.tenant_id,
        ex.H_EXTENSION: install.extension_id,
        ex.H_INSTALL_ID: install.install_id,
        ex.H_VERSION_ID: install.version_id,
    }
    if material.config_version:
        headers[ex.H_CONFIG_VERSION] = material.config_version
    if envelope is not None:
        # The runner checks this against the envelope it was sent.
        headers[ex.H_SECRETS_VERSION] = envelope.version
    if call.idempotency_key and call.method.upper() not in ("GET", "HEAD"):
        headers[ex.H_IDEMPOTENCY_KEY] = call.idempotency_key
    return headers


def redact_for_log(request: ExecuteRequest) -> Mapping[str, Any]:
    """What may be logged about an execute request: identifiers only."""
    ctx = request.context
    return {"request_id": ctx.request_id, "tenant": ctx.tenant_id, "install": ctx.install_id,
            "version": ctx.version_id, "method": request.http.method, "path": request.http.path}
