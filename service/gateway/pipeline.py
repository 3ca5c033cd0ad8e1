"""The gateway pipeline for `/api/ext/{extension}/{path}` (DESIGN.md §4), fail-closed:

  1. authenticate (bearer JWT) → 401 `unauthenticated`; tenant headers that disagree
     with the token → 403 `tenant_mismatch` (headers never select a tenant);
  2. resolve the tenant's active install → 404 `extension_not_available`;
  3. match method + path against the version's declared endpoints (Python matcher);
  4. Cedar decides `read` (GET/HEAD) or `write` with the match in context →
     404 `endpoint_not_found` when only endpoint rules denied, else 403 `forbidden`;
  5. token bucket per tenant + install → 429 `rate_limited` + `retry-after`;
  6. the allow decision is appended to the audit log and awaited until durable, before
     any secret-bearing data is loaded → 503 `access_policy_unavailable` if it cannot be;
  7. body cap → 413 `payload_too_large`, refused from `content-length` or while
     streaming, never by buffering the whole body first;
  8. load config + sealed secrets (re-checking the authorized install/version), build the
     execute request, dispatch → guest status/body/allowed headers; runner unreachable or
     invalid → 502 `bad_gateway` (with request id); deadline → 504 `gateway_timeout`.

Any unexpected failure in steps 1–6 is a 503 `access_policy_unavailable`: an error in the
checks must never become a pass. Error bodies are our codes only — never runner or guest
text — and no token, body, config value or secret is logged or audited.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from audit.actions import decision_event, execution_event
from audit.records import Actor, AuditEvent
from runner import tracing
from runner.contract.capabilities import effective_grant
from runner.contract.execute import ExecuteResponse, RunnerError
from runner.logging_config import bind_log_context, reset_log_context
from service.auth.principal import Principal
from service.auth.tokens import AuthenticationError
from service.denials import log_tenant, principal_key
from service.gateway.config import GatewaySettings
from service.gateway.execute import CallInput, build_execute
from service.gateway.headers import request_headers_for_guest, response_headers_for_client
from service.gateway.idempotency import (
    MAX_KEY_CHARS,
    ClaimState,
    IdempotencyScope,
    IdempotencyStore,
    IdempotencyUnavailable,
    StoredResponse,
    fingerprint,
)
from service.gateway.installs import InstallChanged, InstallInfo, find_install, load_material
from service.gateway.matcher import EndpointMatch, EndpointTable, match_endpoint
from service.gateway.ratelimit import RateLimiter, RateLimitUnavailable
from service.gateway.transport import RunnersDown, RunnerTimeout, RunnerTransport, RunnerUnavailable
from service.observability.metrics import IDEMPOTENT_REPLAYS, RATE_LIMITED, set_error_code, set_tenant
from service.policy.model import NO_BUNDLE_ID, Decision, InstallFacts
from service.policy.model import EndpointMatch as PolicyEndpointMatch

if TYPE_CHECKING:
    from service.container import ServiceContainer

log = logging.getLogger("extgate.gateway")

TENANT_HEADERS = ("x-alga-tenant", "x-tenant-id")
# Rate-limit bucket of a tenant's calls that name no install of theirs (a denied probe).
NO_INSTALL = "-"
_NO_BODY_STATUSES = frozenset({204, 304})
# Runner outcomes that mean "not executed, try again shortly".
_RETRYABLE = frozenset({RunnerError.OVERLOADED.value, RunnerError.COMPONENT_NOT_READY.value})
# finish(status, error_class, outcome): queue the execution-outcome audit record.
Finish = Callable[[int | None, str | None, str | None], None]


class GatewayError(Exception):
    """A refusal with a stable code; becomes `{"error": code, "detail": ...}`."""

    def __init__(self, status: int, code: str, detail: Any = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        # A refused call attributable to a caller: its record (written, bounded, before the
        # answer) and the rate-limit bucket it counts against.
        self.denial: AuditEvent | None = None
        self.rate_key: tuple[str, str] | None = None

    def denied(self, event: AuditEvent, rate_key: tuple[str, str]) -> GatewayError:
        self.denial, self.rate_key = event, rate_key
        return self

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.code}
        if self.detail is not None:
            body["detail"] = self.detail
        return JSONResponse(body, status_code=self.status, headers=self.headers or None)


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _unavailable() -> GatewayError:
    return GatewayError(503, "access_policy_unavailable")


def _recorded(decision: Decision) -> dict[str, Any]:
    """`decision_event` arguments recording what `decision` was decided on (request and
    entity snapshot by digest, the snapshot as an attachment); nothing if not known."""
    inputs = decision.inputs
    if inputs is None:
        return {}
    record, attachments = inputs.record()
    return {"decision": record, "attachments": attachments}


@dataclass(frozen=True, slots=True)
class Authorized:
    principal: Principal
    install: InstallInfo
    endpoint: EndpointMatch
    decision: Decision


class Gateway:
    def __init__(
        self,
        services: ServiceContainer,
        settings: GatewaySettings,
        *,
        transport: RunnerTransport,
        limiter: RateLimiter,
        idempotency: IdempotencyStore,
    ) -> None:
        self.services = services
        self.settings = settings
        self.transport = transport
        self.limiter = limiter
        self.idempotency = idempotency
        self.endpoints = EndpointTable()
        # Steps 1-4 and the material load are JWT/Cedar CPU work plus one single-statement
        # lookup each. On SQLite that lookup is a local page read (WAL readers never wait):
        # cheaper inline than a thread hop, which costs more than the work under load. Over a
        # network (PostgreSQL) they run in the thread pool so the event loop never waits on I/O.
        self._lookup: Callable[..., Awaitable[Any]] = (
            _inline if services.db.dialect == "sqlite" else run_in_threadpool
        )

    async def aclose(self) -> None:
        for closer in (self.transport.aclose, self.limiter.aclose, self.idempotency.aclose):
            try:
                await closer()
            except Exception:  # noqa: BLE001 - shutdown continues
                log.warning("gateway shutdown: %s failed", closer, exc_info=True)

    def close(self) -> None:
        """Synchronous part of shutdown (the embedded runner's threads)."""
        close = getattr(self.transport, "close", None)
        if callable(close):
            close()

    # --- entry point ------------------------------------------------------------------

    async def handle(self, request: Request, extension: str, path: str) -> Response:
        rid: str = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        log_context = bind_log_context()  # tenant, extension and install join once resolved
        try:
            with tracing.span("extgate.gateway", {"http.request.method": request.method, "extgate.request_id": rid},
                              kind="server", parent_headers=request.headers):
                return await self._handle(request, rid, extension, path)
        except GatewayError as err:
            set_error_code(request.scope, err.code)
            if err.code == "rate_limited":
                RATE_LIMITED.inc()
            return err.response()
        finally:
            reset_log_context(log_context)

    async def _handle(self, request: Request, rid: str, extension: str, path: str) -> Response:
        method = request.method.upper()
        guest_path = "/" + path.lstrip("/")
        actor_ip = request.client.host if request.client else None

        # Steps 1–4 are synchronous (JWT, one query, Cedar): one call for all of them.
        try:
            with tracing.span("extgate.authorize"):
                auth = await self._lookup(
                    self.authorize, request.headers.get("authorization", ""), request.headers.getlist, extension,
                    method, guest_path, rid, actor_ip,
                )
        except GatewayError as err:
            if err.denial is not None:
                await self._refused(err)
            raise
        except Exception:
            log.exception("gateway authorization failed (request %s)", rid)
            raise _unavailable() from None

        principal, info = auth.principal, auth.install
        bind_log_context(tenant=info.tenant_id, extension=info.slug, install=info.install_id)
        set_tenant(request.scope, info.tenant_id)
        resource_endpoint = f"{method} {auth.endpoint.template}"

        # 5. rate limit
        try:
            rate = await self.limiter.acquire(info.tenant_id, info.install_id)
        except RateLimitUnavailable:
            log.error("rate limiter unavailable (request %s)", rid)
            raise _unavailable() from None
        if not rate.allowed:
            raise GatewayError(429, "rate_limited", headers={"retry-after": str(rate.retry_after_s)})

        # 6. the decision record, durable before anything secret-bearing is loaded
        actor = Actor.from_principal(principal, auth="jwt", ip=actor_ip)
        await self._append_durable(decision_event(
            allowed=True, tenant_id=info.tenant_id, actor=actor, install_id=info.install_id,
            endpoint=resource_endpoint, request_id=rid, policy_ids=auth.decision.policy_ids,
            policy_revision=auth.decision.revision, reasons=auth.decision.reasons, extension=info.slug,
            details={"method": method, "path": guest_path[:256], "policy_decision": "allow"},
            **_recorded(auth.decision),
        ))
        started = time.perf_counter()

        def finish(status: int | None, error_class: str | None, outcome: str | None) -> None:
            self._submit(execution_event(
                tenant_id=info.tenant_id, actor=actor, install_id=info.install_id, endpoint=resource_endpoint,
                request_id=rid, status=status, duration_ms=int((time.perf_counter() - started) * 1000),
                error_class=error_class, outcome=outcome,
            ))

        # 7. body cap
        try:
            body = await self._read_body(request)
        except GatewayError as err:
            finish(err.status, err.code, "policy_denied")
            raise

        # Idempotency (non-GET with a client key), scoped by tenant + install + principal: the
        # same key sent by another user of the tenant is another key.
        idem_scope = IdempotencyScope(info.tenant_id, info.install_id, principal.subject)
        idem_key = request.headers.get("x-idempotency-key", "").strip() or None
        if method in ("GET", "HEAD"):
            idem_key = None
        fp = ""
        if idem_key is not None:
            if len(idem_key) > MAX_KEY_CHARS:
                finish(422, "invalid_idempotency_key", "policy_denied")
                raise GatewayError(422, "invalid_request", {"message": "x-idempotency-key is too long"})
            fp = fingerprint(method, guest_path, request.url.query, body, principal.subject)
            try:
                claim = await self.idempotency.claim(idem_scope, idem_key, fp)
            except IdempotencyUnavailable:
                finish(503, "idempotency_unavailable", "error")
                raise _unavailable() from None
            if claim.state is ClaimState.REPLAY and claim.response is not None:
                IDEMPOTENT_REPLAYS.inc()
                finish(claim.response.status, None, "replayed")
                return self._client_response(method, claim.response.status, claim.response.headers,
                                             claim.response.body, replayed=True)
            if claim.state is ClaimState.IN_PROGRESS:
                finish(409, "idempotency_in_progress", "policy_denied")
                raise GatewayError(409, "idempotency_in_progress", headers={"retry-after": "1"})
            if claim.state is ClaimState.MISMATCH:
                finish(422, "idempotency_key_reused", "policy_denied")
                raise GatewayError(422, "idempotency_key_reused")

        try:
            response, stored = await self._dispatch(request, rid, method, guest_path, body, idem_key, auth, finish)
        except BaseException:
            if idem_key is not None:
                await self._release(idem_scope, idem_key, fp)
            raise
        if idem_key is not None:
            # Only answers from the guest are remembered; a runner failure can be retried.
            if stored is not None and len(stored.body) <= self.settings.idempotency_max_response_bytes:
                try:
                    await self.idempotency.complete(idem_scope, idem_key, fp, stored)
                except IdempotencyUnavailable:
                    log.warning("could not store idempotent response (request %s)", rid)
            else:
                await self._release(idem_scope, idem_key, fp)
        return response

    async def _release(self, scope: IdempotencyScope, key: str, fp: str) -> None:
        try:
            await self.idempotency.release(scope, key, fp)
        except IdempotencyUnavailable:
            log.warning("could not release idempotency claim")

    # --- steps 1–4 ----------------------------------------------------------------------

    def authorize(
        self,
        authorization: str,
        header_values: Any,
        extension: str,
        method: str,
        path: str,
        rid: str,
        ip: str | None = None,
    ) -> Authorized:
        services = self.services
        # 1. authenticate
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GatewayError(401, "unauthenticated", headers={"www-authenticate": "Bearer"})
        try:
            principal = services.verifier.verify(token.strip())
        except AuthenticationError:
            raise GatewayError(401, "unauthenticated", headers={"www-authenticate": "Bearer"}) from None
        actor = Actor.from_principal(principal, auth="jwt", ip=ip)
        own_log = log_tenant(principal.tenant, principal.is_platform_admin)
        for name in TENANT_HEADERS:
            for value in header_values(name):
                if value.strip() and value.strip() != principal.tenant:
                    raise GatewayError(403, "tenant_mismatch").denied(AuditEvent(
                        action="gateway.decision", outcome="deny", tenant_id=own_log, actor=actor,
                        resource=f"extension:{extension[:200]}", request_id=rid,
                        details={"error": "tenant_mismatch", "header": name, "method": method,
                                 "target_tenant": value.strip()[:64]},
                    ), (principal.tenant, NO_INSTALL))

        # 2. the tenant's active install
        info = find_install(services.db.reader, principal.tenant, extension)
        if info is None:
            raise GatewayError(404, "extension_not_available").denied(AuditEvent(
                action="gateway.decision", outcome="deny", tenant_id=own_log, actor=actor,
                resource=f"extension:{extension[:200]}", request_id=rid,
                details={"error": "extension_not_available", "method": method},
            ), (principal.tenant, NO_INSTALL))

        # 3. declared endpoint
        match = match_endpoint(self.endpoints.get(info.version_id, info.api_endpoints), method, path)

        # 4. Cedar
        policy = services.policy
        if policy is None:
            raise _unavailable()
        facts = InstallFacts(
            tenant=info.tenant_id, install_id=info.install_id, extension_id=info.extension_id, slug=info.slug,
            capabilities=frozenset(effective_grant(info.declared_capabilities, info.granted_capabilities)),
            enabled=True,
        )
        with tracing.span("extgate.policy.decide"):
            decision: Decision = policy.decide_invoke(
                principal, facts, method,
                PolicyEndpointMatch(declared=match is not None, template=match.template if match else None),
                path=path,
            )
        template = match.template if match is not None else "<undeclared>"
        if not decision.allowed:
            event = decision_event(
                allowed=False, tenant_id=own_log, actor=actor, install_id=info.install_id,
                endpoint=f"{method} {template}", request_id=rid, policy_ids=decision.policy_ids,
                policy_revision=decision.revision, reasons=decision.reasons, extension=info.slug,
                details={"method": method, "path": path[:256], "default_deny": decision.default_deny},
                **_recorded(decision),
            )
            if decision.policy_ids == (NO_BUNDLE_ID,):
                raise _unavailable().denied(event, (info.tenant_id, info.install_id))
            if decision.endpoint_not_found:
                raise GatewayError(404, "endpoint_not_found").denied(event, (info.tenant_id, info.install_id))
            raise GatewayError(403, "forbidden").denied(event, (info.tenant_id, info.install_id))
        assert match is not None  # endpoint rules deny undeclared endpoints
        return Authorized(principal, info, match, decision)

    # --- audit ----------------------------------------------------------------------------

    async def _refused(self, err: GatewayError) -> None:
        """A denied call counts against the caller's rate limit like an allowed one (over it:
        429), and is recorded in the caller's log, bounded per principal, before the answer."""
        assert err.denial is not None and err.rate_key is not None
        try:
            rate = await self.limiter.acquire(*err.rate_key)
        except RateLimitUnavailable:
            log.error("rate limiter unavailable for a denied call")
            raise _unavailable() from None
        actor = err.denial.actor
        recorder = self.services.denials
        if recorder is not None and actor is not None:
            await recorder.record_async(principal_key(actor.id, actor.tenant or ""), err.denial,
                                        target=err.denial.resource)
        if not rate.allowed:
            raise GatewayError(429, "rate_limited", headers={"retry-after": str(rate.retry_after_s)})

    async def _append_durable(self, event: AuditEvent) -> None:
        audit = self.services.audit
        if audit is None:
            raise _unavailable()
        try:
            append_async = getattr(audit, "append_async", None)
            with tracing.span("extgate.audit.append"):
                if append_async is not None:
                    await append_async(event)
                else:
                    await run_in_threadpool(audit.append, event)
        except Exception as exc:
            log.error("audit append failed for request %s: %s", event.request_id, type(exc).__name__)
            raise _unavailable() from None

    def _submit(self, event: AuditEvent) -> None:
        """Best effort (denials and outcomes): the answer does not wait for, or depend on, it."""
        audit = self.services.audit
        if audit is None:
            return
        try:
            submit = getattr(audit, "submit", None)
            if submit is not None:
                submit(event, defer=True)  # shares the next awaited record's commit
            else:
                audit.append(event)
        except Exception as exc:  # noqa: BLE001
            log.warning("audit record for request %s not queued: %s", event.request_id, type(exc).__name__)

    # --- step 7 -------------------------------------------------------------------------

    async def _read_body(self, request: Request) -> bytes:
        cap = self.settings.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise GatewayError(400, "bad_request", {"message": "invalid content-length"})
            if int(length) > cap:
                raise GatewayError(413, "payload_too_large", {"limit_bytes": cap})
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:  # chunked upload: stop reading at the cap
                    raise GatewayError(413, "payload_too_large", {"limit_bytes": cap})
                chunks.append(chunk)
        except ClientDisconnect:
            raise GatewayError(400, "bad_request", {"message": "client disconnected"}) from None
        return b"".join(chunks)

    # --- step 8 -------------------------------------------------------------------------

    async def _dispatch(
        self, request: Request, rid: str, method: str, path: str, body: bytes, idem_key: str | None,
        auth: Authorized, finish: Finish,
    ) -> tuple[Response, StoredResponse | None]:
        info = auth.install
        try:
            material = await self._lookup(load_material, self.services.db.reader, info)
        except InstallChanged:
            finish(503, "install_changed", "policy_denied")
            raise _unavailable() from None
        except Exception:
            log.exception("loading install material failed (request %s)", rid)
            finish(503, "install_material_unavailable", "error")
            raise _unavailable() from None

        call = CallInput(
            request_id=rid, method=method, path=path, query=dict(request.query_params),
            headers=request_headers_for_guest(request.headers.raw), body=body, idempotency_key=idem_key,
        )
        s = self.settings
        try:
            execute, headers = build_execute(call, auth.principal, info, material,
                                             timeout_ms=s.timeout_ms, memory_mb=s.memory_mb,
                                             admission_timeout_ms=s.admission_timeout_ms)
        except Exception:
            # A malformed stored envelope or config: never forward half of it.
            log.error("could not build the execute request (request %s)", rid)
            finish(502, "invalid_install_material", "error")
            raise GatewayError(502, "bad_gateway", {"request_id": rid}) from None

        try:
            # The guest's budget starts when it starts: waiting for a worker is bounded separately.
            deadline_s = (s.admission_timeout_ms + s.timeout_ms + s.timeout_grace_ms) / 1000
            with tracing.span("extgate.runner.dispatch", {"extgate.transport": self.transport.name}, kind="client"):
                tracing.inject(headers)  # the runner continues this trace (embedded or remote)
                result = await self.transport.execute(execute, headers, deadline_s=deadline_s)
        except RunnerTimeout:
            finish(504, "timeout", "timeout")
            raise GatewayError(504, "gateway_timeout", {"request_id": rid}) from None
        except RunnersDown:
            log.warning("no runner reachable for request %s", rid)
            finish(503, "runner_unavailable", "error")
            raise GatewayError(503, "runner_unavailable", {"request_id": rid}, headers={"retry-after": "1"}) from None
        except RunnerUnavailable as exc:
            log.warning("runner unavailable for request %s: %s", rid, exc)
            finish(502, "runner_unavailable", "error")
            raise GatewayError(502, "bad_gateway", {"request_id": rid}) from None
        return self._result(method, rid, result, finish)

    def _result(
        self, method: str, rid: str, result: ExecuteResponse, finish: Finish
    ) -> tuple[Response, StoredResponse]:
        if result.error is not None:
            code = result.error
            if code == RunnerError.TIMEOUT.value:
                finish(504, code, "timeout")
                raise GatewayError(504, "gateway_timeout", {"request_id": rid})
            if code == RunnerError.RUNNER_BUSY.value:
                # This tenant's share of the runners is in use: not started, retry shortly.
                finish(503, code, "error")
                raise GatewayError(503, "runner_busy", {"request_id": rid}, headers={"retry-after": "1"})
            if code in _RETRYABLE:
                finish(503, code, "error")
                raise GatewayError(503, "runner_unavailable", {"request_id": rid}, headers={"retry-after": "1"})
            finish(502, code, "error")
            raise GatewayError(502, "bad_gateway", {"request_id": rid})
        status = result.status
        if not 200 <= status <= 599:
            finish(502, "invalid_guest_status", "error")
            raise GatewayError(502, "bad_gateway", {"request_id": rid})
        try:
            body = base64.b64decode(result.body_b64, validate=True) if result.body_b64 else b""
        except ValueError:
            finish(502, "invalid_response_body", "error")
            raise GatewayError(502, "bad_gateway", {"request_id": rid}) from None
        headers = response_headers_for_client(result.headers)
        finish(status, None, "success" if status < 400 else "upstream_error")
        return self._client_response(method, status, headers, body), StoredResponse(status, headers, body)

    @staticmethod
    def _client_response(method: str, status: int, headers: dict[str, str], body: bytes,
                         replayed: bool = False) -> Response:
        content = b"" if method == "HEAD" or status in _NO_BODY_STATUSES else body
        out = dict(headers)
        if replayed:
            out["x-ext-idempotent-replay"] = "true"
        # content-type travels in `headers` verbatim (media_type would append a charset).
        return Response(content=content, status_code=status, headers=out)
