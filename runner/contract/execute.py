"""The execute protocol between the gateway and the runner (DESIGN.md §4).

`POST /v1/execute` and the in-process `Runner.execute` both take an `ExecuteRequest` and
answer an `ExecuteResponse`. Execution outcomes (including guest failures) are an
`ExecuteResponse` whose `error` is one of the `RunnerError` codes; only caller mistakes at
the transport (bad credential, malformed JSON, routing mismatch) are HTTP errors.

extgate additions to the upstream shape, all optional so an upstream gateway's payload
still parses:
- `egress.allowed_hosts`: the install's outbound HTTP allowlist. Entries are exact host
  names; an entry also admits its subdomains (`example.com` admits `api.example.com`).
  **An empty list denies all egress** (upstream treats empty as allow-all).
- `limits.admission_timeout_ms`: how long the call may wait for a worker (fair scheduling,
  `runner/scheduler.py`) before it is answered `runner_busy`; `limits.timeout_ms` counts
  from the moment the guest starts, not from arrival.
- `providers` is also the debug grant: the runner publishes the call's stdout, stderr and
  log lines only when it contains `cap:debug.logs`.
- `limits` values are clamped by the runner's own maxima; `fuel` is honoured only when
  the runner's engine was built with fuel metering (otherwise the wall-clock deadline
  still applies and fuel is ignored).
Unknown fields are ignored (as upstream) so that newer gateways can talk to older runners.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from runner.contract.envelope import SecretEnvelope

# Transport headers (gateway → runner).
H_REQUEST_ID = "x-request-id"
H_IDEMPOTENCY_KEY = "x-idempotency-key"
H_TENANT = "x-alga-tenant"
H_EXTENSION = "x-alga-extension"
H_INSTALL_ID = "x-ext-install-id"
H_VERSION_ID = "x-ext-version-id"
H_CONFIG_VERSION = "x-ext-config-version"
H_SECRETS_VERSION = "x-ext-secrets-version"
H_AUTHORIZATION = "authorization"  # `Bearer <service credential>`

# Request headers a guest may see; everything else (authorization, cookies…) is dropped
# by the runner even if a gateway forwarded it.
GUEST_HEADER_ALLOWLIST = frozenset({"x-request-id", "accept", "content-type", "accept-encoding", "user-agent"})


class RunnerError(StrEnum):
    """`ExecuteResponse.error` codes. Stable strings; never carry guest or secret text."""

    # caller / routing (also used as HTTP error bodies by the transport)
    UNAUTHENTICATED = "unauthenticated"
    INVALID_REQUEST = "invalid_request"
    MISSING_ROUTING_HEADERS = "missing_routing_headers"
    TENANT_MISMATCH = "tenant_mismatch"
    VERSION_MISMATCH = "version_mismatch"
    UNKNOWN_CAPABILITIES = "unknown_capabilities"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    # component availability
    BUNDLE_NOT_FOUND = "bundle_not_found"
    COMPONENT_NOT_READY = "component_not_ready"
    COMPONENT_INCOMPATIBLE = "component_incompatible"
    # secrets
    SECRET_DECRYPT_FAILED = "secret_decrypt_failed"  # noqa: S105 - an error code
    # execution outcomes
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    FUEL_EXHAUSTED = "fuel_exhausted"
    GUEST_CRASH = "guest_crash"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_GUEST_RESPONSE = "invalid_guest_response"
    OVERLOADED = "overloaded"
    # not started: the tenant's (or install's) share of the runner is in use and the call
    # could not start within its admission deadline, or the tenant's queue is full
    RUNNER_BUSY = "runner_busy"
    INTERNAL = "internal_error"


# The status carried in `ExecuteResponse.status` for each failure.
ERROR_STATUS: dict[RunnerError, int] = {
    RunnerError.UNAUTHENTICATED: 401,
    RunnerError.INVALID_REQUEST: 400,
    RunnerError.MISSING_ROUTING_HEADERS: 400,
    RunnerError.TENANT_MISMATCH: 403,
    RunnerError.VERSION_MISMATCH: 409,
    RunnerError.UNKNOWN_CAPABILITIES: 400,
    RunnerError.IDEMPOTENCY_KEY_REUSED: 422,
    RunnerError.BUNDLE_NOT_FOUND: 404,
    RunnerError.COMPONENT_NOT_READY: 503,
    RunnerError.COMPONENT_INCOMPATIBLE: 500,
    RunnerError.SECRET_DECRYPT_FAILED: 500,
    RunnerError.TIMEOUT: 504,
    RunnerError.MEMORY_LIMIT: 500,
    RunnerError.FUEL_EXHAUSTED: 500,
    RunnerError.GUEST_CRASH: 500,
    RunnerError.PAYLOAD_TOO_LARGE: 413,
    RunnerError.INVALID_GUEST_RESPONSE: 502,
    RunnerError.OVERLOADED: 503,
    RunnerError.RUNNER_BUSY: 503,
    RunnerError.INTERNAL: 500,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExecuteContext(_Model):
    request_id: str | None = None
    tenant_id: str = Field(min_length=1)
    extension_id: str = Field(min_length=1)
    install_id: str | None = None
    version_id: str | None = None
    content_hash: str = Field(min_length=1)
    config: dict[str, str] = Field(default_factory=dict)


class HttpPayload(_Model):
    method: str = Field(min_length=1)
    path: str = Field(min_length=1)
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body_b64: str | None = None


class Limits(_Model):
    timeout_ms: int | None = Field(default=None, gt=0)
    # How long the call may wait for a worker before `runner_busy` (clamped to the runner's
    # EXTGATE_RUNNER_ADMISSION_TIMEOUT_MS). `timeout_ms` starts when the guest starts.
    admission_timeout_ms: int | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    fuel: int | None = Field(default=None, gt=0)


class EgressPolicy(_Model):
    allowed_hosts: list[str] = Field(default_factory=list)


class UserInfo(_Model):
    user_id: str
    user_email: str
    user_name: str
    user_type: str
    client_name: str = ""
    client_id: str | None = None
    additional_fields: dict[str, str] = Field(default_factory=dict)


class ExecuteRequest(_Model):
    context: ExecuteContext
    http: HttpPayload
    limits: Limits = Field(default_factory=Limits)
    providers: list[str] = Field(default_factory=list)
    secret_envelope: SecretEnvelope | None = None
    user: UserInfo | None = None
    egress: EgressPolicy = Field(default_factory=EgressPolicy)


class ExecuteResponse(_Model):
    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body_b64: str | None = None
    error: str | None = None

    @classmethod
    def failure(cls, code: RunnerError) -> ExecuteResponse:
        return cls(status=ERROR_STATUS[code], headers={}, body_b64=None, error=code.value)
