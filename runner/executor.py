"""The runner: executes one request in a fresh, limited wasmtime Store.

`Runner.execute` is the in-process API (the embedded gateway calls it directly; the HTTP
transport calls it too). It is thread-safe: requests are admitted by a fair scheduler
(`runner/scheduler.py`: per-tenant queues, per-tenant and per-install caps, an admission
deadline) onto a worker pool (the GIL is released while wasm runs), everything request-specific lives in a fresh
Store + instance + `CallState` that is dropped in `finally`, and a failing guest only ever
produces an error code — the worker thread is reusable at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from wasmtime import Store, WasiConfig, WasmtimeError

from runner import metrics, tracing
from runner.bulk.codec import (
    MalformedBodyText,
    base64_from_radix64,
    canonical_base64_size,
    radix64_from_base64,
    radix64_from_bytes,
)
from runner.cache import ComponentCache, ComponentNotCompiledError, TTLCache
from runner.compiler import ComponentReport, compile_component, rebuild_outdated
from runner.contract import execute as ex
from runner.contract.bundle_store import BundleNotFoundError, LocalBundleStore, check_content_hash
from runner.contract.capabilities import (
    ALWAYS_GRANTED,
    DEBUG_LOGS,
    SECRETS_GET,
    UnknownCapabilityError,
    normalize_capabilities,
)
from runner.contract.envelope import EnvelopeError, EnvelopeExpiredError, Keyring, SecretEnvelope, open_envelope
from runner.contract.execute import ExecuteRequest, ExecuteResponse, RunnerError
from runner.debug import DebugEvent, DebugSink
from runner.debug.capture import OutputCapture, truncate_utf8
from runner.debug.factory import create_debug_sink
from runner.debug.masking import SecretMasker
from runner.egress import guarded_client
from runner.engine import EngineHandle, EngineOptions, get_engine
from runner.host import build_linker
from runner.host.state import CURRENT, CallState, SecretsView
from runner.host.values import field, rec
from runner.patches import call_typed
from runner.providers import Providers
from runner.scheduler import FairScheduler, Refusal, SchedulerLimits, Ticket
from runner.settings import RunnerSettings
from runner.storage.base import KVStore

log = logging.getLogger(__name__)

_OOM_MARKERS = ("memoryerror", "out of memory", "memory allocation of", "cannot allocate memory",
                "failed to grow memory", "memory limit", "exceeds memory limits")


class _Failure(Exception):
    def __init__(self, code: RunnerError) -> None:
        super().__init__(code.value)
        self.code = code


def classify_trap(message: str, stderr_tail: str, timed_out: bool) -> RunnerError:
    """Map a wasmtime failure to a runner error code (wasmtime reports all of them as
    WasmtimeError; the reason is in the message)."""
    text = message.lower()
    if "all fuel consumed" in text:
        return RunnerError.FUEL_EXHAUSTED
    if "wasm trap: interrupt" in text or timed_out:
        return RunnerError.TIMEOUT
    if "hostcalls has been exhausted" in text or "too much data is being copied" in text:
        return RunnerError.PAYLOAD_TOO_LARGE
    if any(m in text for m in _OOM_MARKERS) or any(m in stderr_tail.lower() for m in _OOM_MARKERS):
        return RunnerError.MEMORY_LIMIT
    return RunnerError.GUEST_CRASH


def _deliver(
    loop: asyncio.AbstractEventLoop, waiting: asyncio.Future[ExecuteResponse], done: Future[ExecuteResponse]
) -> None:
    """From the worker thread: hand a finished job's answer to the waiting coroutine."""
    def settle() -> None:
        if waiting.done():  # the caller stopped waiting
            return
        if done.cancelled():
            waiting.cancel()
        elif (exc := done.exception()) is not None:
            waiting.set_exception(exc)
        else:
            waiting.set_result(done.result())

    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
        loop.call_soon_threadsafe(settle)


def _expire(waiting: asyncio.Future[ExecuteResponse]) -> None:
    if not waiting.done():
        waiting.set_exception(TimeoutError())


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A queued call: wait up to `admission_s` for it to start, then up to `run_s` for it to end."""

    ticket: Ticket[ExecuteResponse]
    idem: tuple[tuple[str, ...], str] | None
    admission_s: float
    run_s: float


class Runner:
    def __init__(
        self,
        settings: RunnerSettings | None = None,
        *,
        keyring: Keyring | None = None,
        kv_store: KVStore | None = None,
        debug_sink: DebugSink | None = None,
        providers: Providers | None = None,
        bundle_store: LocalBundleStore | None = None,
        engine_options: EngineOptions | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.settings = s = settings or RunnerSettings()
        self.keyring = keyring or s.keyring()
        self.engine_options = engine_options or EngineOptions(consume_fuel=s.runner_fuel)
        self.engine: EngineHandle = get_engine(self.engine_options)
        self.linker = build_linker(self.engine.engine)
        self._handler_types: dict[str, Any] = {}
        self._types_lock = threading.Lock()
        self.components = ComponentCache(self.engine.engine, s.compiled_dir, self.engine_options,
                                         s.runner_component_cache_size)
        self.bundle_store = bundle_store or LocalBundleStore(s.bundles_dir)
        if kv_store is None:
            from runner.storage.sql import SqlKVStore

            if s.effective_database_url().startswith("sqlite"):
                s.data_dir.mkdir(parents=True, exist_ok=True)
            kv_store = SqlKVStore(s.effective_database_url(), create_tables=s.create_tables())
        self.kv = kv_store
        self.debug: DebugSink = debug_sink or create_debug_sink()
        self._owns_debug = debug_sink is None
        self.providers = providers or Providers()
        self.http_client = http_client or guarded_client(
            allow_private_networks=s.runner_fetch_allow_private_networks)
        self.scheduler: FairScheduler[ExecuteResponse] = FairScheduler(
            SchedulerLimits(threads=s.effective_threads, tenant_cap=s.effective_tenant_max_concurrency,
                            install_cap=s.effective_install_max_concurrency,
                            tenant_queue=s.runner_tenant_queue_size, total_queue=s.runner_queue_size),
            not_started=lambda: metrics.counted(ExecuteResponse.failure(RunnerError.RUNNER_BUSY)),
        )
        self._secrets_cache: TTLCache[tuple[str, ...], dict[str, str]] = TTLCache(4096, s.runner_secrets_cache_ttl_s)
        self._config_cache: TTLCache[tuple[str, ...], list[tuple[str, str]]] = TTLCache(4096, 3600.0)
        self._idempotency: TTLCache[tuple[str, ...], tuple[str, ExecuteResponse]] = TTLCache(
            s.runner_idempotency_max_entries, s.runner_idempotency_ttl_s)
        self._compiling: set[str] = set()
        self._compiling_lock = threading.Lock()
        metrics.watch_runner(self)  # queue depths, read when scraped

    # --- publish / install path ---------------------------------------------------------

    def precompile(self, wasm: bytes | Path, content_hash: str) -> ComponentReport:
        """Validate + compile a component (subprocess); raises ComponentRejectedError."""
        return compile_component(wasm, self.settings.compiled_dir, content_hash=content_hash,
                                 options=self.engine_options)

    def prepare(self, content_hash: str) -> ComponentReport:
        """Compile a stored bundle's component if it has no artifact yet."""
        return self.precompile(self.bundle_store.component_path(content_hash), content_hash)

    def _compile_in_background(self, content_hash: str) -> None:
        with self._compiling_lock:
            if content_hash in self._compiling:
                return
            self._compiling.add(content_hash)

        def work() -> None:
            try:
                self.prepare(content_hash)
            except Exception:  # noqa: BLE001 - reported through logs; requests keep failing closed
                log.exception("background compile of %s failed", content_hash)
            finally:
                with self._compiling_lock:
                    self._compiling.discard(content_hash)

        threading.Thread(target=work, name="extgate-compile", daemon=True).start()

    # --- execute --------------------------------------------------------------------

    def execute(self, request: ExecuteRequest, headers: Mapping[str, str] | None = None) -> ExecuteResponse:
        admitted = self._admit(request, headers)
        if isinstance(admitted, ExecuteResponse):
            return admitted
        future = admitted.ticket.future
        try:
            response = future.result(timeout=admitted.admission_s)
        except FutureTimeout:
            self.scheduler.withdraw(admitted.ticket)  # answers `runner_busy` unless it just started
            try:
                response = future.result(timeout=admitted.run_s)
            except FutureTimeout:
                return ExecuteResponse.failure(RunnerError.TIMEOUT)
        return self._remember(admitted.idem, response)

    async def execute_async(
        self, request: ExecuteRequest, headers: Mapping[str, str] | None = None, *, deadline_s: float | None = None
    ) -> ExecuteResponse:
        """`execute` for async callers. `deadline_s` (the caller's own budget) shortens the
        outer bound; either way an expired wait is answered as a `timeout` failure."""
        admitted = self._admit(request, headers)
        if isinstance(admitted, ExecuteResponse):
            return admitted
        timeout_s = admitted.admission_s + admitted.run_s
        if deadline_s is not None:
            timeout_s = min(timeout_s, deadline_s)
        # The worker's future is bridged one way: a caller that times out or is cancelled
        # stops waiting, but never cancels a running job. (Also cheaper than
        # `asyncio.wait_for`, which adds a future and a loop round trip to every call.)
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[ExecuteResponse] = loop.create_future()
        ticket = admitted.ticket
        ticket.future.add_done_callback(lambda done: _deliver(loop, waiting, done))
        # Not started by its admission deadline: withdrawn, and answered `runner_busy` through
        # the future (unless a worker took it just now).
        admission_timer = loop.call_later(admitted.admission_s, self.scheduler.withdraw, ticket)
        timer = loop.call_later(timeout_s, _expire, waiting)
        try:
            response = await waiting
        except TimeoutError:
            self.scheduler.withdraw(ticket)  # a caller deadline shorter than admission: free the queue spot
            return ExecuteResponse.failure(RunnerError.TIMEOUT)
        finally:
            timer.cancel()
            admission_timer.cancel()
        return self._remember(admitted.idem, response)

    def queue_depths(self) -> dict[str, int]:
        """Calls waiting for a worker, per tenant (for metrics; tenants with none are absent)."""
        return self.scheduler.queue_depths()

    def _remember(self, idem: tuple[tuple[str, ...], str] | None, response: ExecuteResponse) -> ExecuteResponse:
        if idem is not None and response.error is None:
            self._idempotency.put(idem[0], (idem[1], response))
        return response

    def _admit(self, req: ExecuteRequest, headers: Mapping[str, str] | None) -> ExecuteResponse | _Admitted:
        h = {k.lower(): v for k, v in (headers or {}).items()}
        if headers is not None:
            problem = check_routing(req, h)
            if problem is not None:
                return ExecuteResponse.failure(problem)
        try:
            caps = frozenset(normalize_capabilities(req.providers)) | ALWAYS_GRANTED
        except UnknownCapabilityError:
            return ExecuteResponse.failure(RunnerError.UNKNOWN_CAPABILITIES)
        try:
            check_content_hash(req.context.content_hash)
        except ValueError:
            return ExecuteResponse.failure(RunnerError.INVALID_REQUEST)

        idem = None
        key = h.get(ex.H_IDEMPOTENCY_KEY, "").strip()
        if key and req.http.method.upper() not in ("GET", "HEAD"):
            # Scoped to the caller: another user of the tenant reusing a key is another key.
            ctx = req.context
            scope = (ctx.tenant_id, ctx.extension_id, ctx.install_id or "", caller_id(req), key)
            fingerprint = request_fingerprint(req)
            hit = self._idempotency.get(scope)
            if hit is not None:
                if hit[0] != fingerprint:
                    return ExecuteResponse.failure(RunnerError.IDEMPOTENCY_KEY_REUSED)
                return hit[1]
            idem = (scope, fingerprint)

        s = self.settings
        timeout_ms = min(req.limits.timeout_ms or s.runner_default_timeout_ms, s.runner_max_timeout_ms)
        admission_ms = min(req.limits.admission_timeout_ms or s.runner_admission_timeout_ms,
                           s.runner_admission_timeout_ms)

        submitted = time.monotonic()

        def job(started: float) -> ExecuteResponse:
            metrics.QUEUE_WAIT_SECONDS.observe(max(0.0, started - submitted))
            try:
                # The guest's budget starts now, not when the call arrived: time spent
                # waiting for a worker is bounded by the admission deadline instead.
                with tracing.span("extgate.runner.run", kind="server", parent_headers=h):
                    return metrics.counted(self._run(req, caps, h, started + timeout_ms / 1000))
            except Exception:  # noqa: BLE001 - last line of defence: never kill the worker
                log.exception("runner internal error")
                return metrics.counted(ExecuteResponse.failure(RunnerError.INTERNAL))

        admitted = self.scheduler.submit(req.context.tenant_id, req.context.install_id or "", job,
                                         time.monotonic() + admission_ms / 1000)
        if admitted is Refusal.TENANT_QUEUE_FULL:
            return metrics.counted(ExecuteResponse.failure(RunnerError.RUNNER_BUSY))
        if isinstance(admitted, Refusal):
            return metrics.counted(ExecuteResponse.failure(RunnerError.OVERLOADED))
        # Generous outer bound once started: the epoch deadline fires first; this only
        # protects callers from a host call that ignores its own timeout.
        return _Admitted(admitted, idem, admission_ms / 1000, timeout_ms / 1000 + 30.0)

    # --- one request, on a worker thread --------------------------------------------

    def _run(
        self, req: ExecuteRequest, caps: frozenset[str], headers: dict[str, str], deadline: float
    ) -> ExecuteResponse:
        ctx = req.context
        request_id = ctx.request_id or headers.get(ex.H_REQUEST_ID) or str(uuid.uuid4())
        # Debug lines are collected only while the install holds `cap:debug.logs` (the grant
        # travels in `providers`): lines from before a grant never exist, so never show.
        debug_granted = DEBUG_LOGS in caps
        try:
            component, bulk_export = self._component(ctx.content_hash)
            secrets = self._secrets(req, caps)
            limit = self.settings.runner_max_request_body_bytes
            body: bytes | str | None = (decode_body(req.http.body_b64, limit) if bulk_export is None
                                        else bulk_body_text(req.http.body_b64, limit))
        except _Failure as failure:
            if debug_granted:
                self._publish(req, request_id, "runner", "error", f"request refused: {failure.code.value}")
            return ExecuteResponse.failure(failure.code)

        masks = SecretMasker(secrets.values.values())

        def emit(stream: str, level: str, message: str) -> None:
            if debug_granted:
                self._publish(req, request_id, stream, level, message, masks)

        state = CallState(
            context=ctx, request_id=request_id, capabilities=caps, secrets=secrets,
            config_items=self._config_items(req, headers.get(ex.H_CONFIG_VERSION)), user=req.user,
            egress_hosts=tuple(req.egress.allowed_hosts), deadline=deadline, settings=self.settings,
            kv=self.kv, providers=self.providers, http_client=self.http_client, emit=emit,
        )
        stdout = OutputCapture(self.settings.runner_output_max_bytes)
        stderr = OutputCapture(self.settings.runner_output_max_bytes)
        memory_mb = min(req.limits.memory_mb or self.settings.runner_default_memory_mb,
                        self.settings.runner_max_memory_mb)
        guest_request = rec(
            context=rec(request_id=request_id, tenant_id=ctx.tenant_id, extension_id=ctx.extension_id,
                        install_id=ctx.install_id, version_id=ctx.version_id),
            http=rec(method=req.http.method.upper(), url=guest_url(req.http.path, req.http.query),
                     headers=[rec(name=k, value=v) for k, v in guest_headers(req.http.headers, request_id)],
                     body=body),
        )
        token = CURRENT.set(state)
        store = Store(self.engine.engine)
        started = time.monotonic()
        try:
            wasi = WasiConfig()  # no preopens, no env, no args, no network
            wasi.stdout_custom = stdout.write
            wasi.stderr_custom = stderr.write
            store.set_wasi(wasi)
            store.set_limits(memory_size=memory_mb << 20, instances=64, tables=32, memories=4)
            if self.engine_options.consume_fuel:
                store.set_fuel(req.limits.fuel or self.settings.runner_default_fuel)
            remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
            store.set_epoch_deadline(self.engine.ticks_for(remaining_ms))
            try:
                instantiating = time.perf_counter()
                with tracing.span("extgate.guest.instantiate"):
                    instance = self.linker.instantiate(store, component)
                metrics.INSTANTIATE_SECONDS.observe(time.perf_counter() - instantiating)
                handler = instance.get_func(store, bulk_export or "handler")
                if handler is None:
                    raise _Failure(RunnerError.COMPONENT_INCOMPATIBLE)
                type_key = ctx.content_hash if bulk_export is None else f"{ctx.content_hash}#{bulk_export}"
                calling = time.perf_counter()
                with tracing.span("extgate.guest.call"):
                    result = call_typed(handler, store, self._handler_type(type_key, handler, store), guest_request)
                metrics.CALL_SECONDS.observe(time.perf_counter() - calling)
                if self.engine_options.consume_fuel:
                    metrics.FUEL_CONSUMED.observe((req.limits.fuel or self.settings.runner_default_fuel)
                                                  - store.get_fuel())
            except WasmtimeError as exc:
                timed_out = time.monotonic() >= deadline
                tail = " ".join(t for t, _ in stderr.lines(512)[-5:])
                code = classify_trap(str(exc), tail, timed_out)
                if "instantiat" in str(exc).lower() and code is RunnerError.GUEST_CRASH:
                    code = RunnerError.COMPONENT_INCOMPATIBLE
                emit("runner", "error", f"execution failed: {code.value} after "
                     f"{(time.monotonic() - started) * 1000:.0f} ms")
                return ExecuteResponse.failure(code)
            return self._response(result, emit, bulk=bulk_export is not None)
        except _Failure as failure:
            return ExecuteResponse.failure(failure.code)
        finally:
            store.close()
            CURRENT.reset(token)
            if debug_granted:
                self._flush_output(stdout, "stdout", "info", emit, masks.max_len)
                self._flush_output(stderr, "stderr", "error", emit, masks.max_len)

    def _response(self, result: Any, emit: Any, *, bulk: bool = False) -> ExecuteResponse:
        try:
            status = int(field(result, "status"))
            headers = {str(field(h, "name")).lower(): str(field(h, "value")) for h in field(result, "headers")}
            body = field(result, "body")
        except (AttributeError, TypeError, ValueError):
            return ExecuteResponse.failure(RunnerError.INVALID_GUEST_RESPONSE)
        if not 100 <= status <= 599:
            emit("runner", "error", f"guest returned invalid status {status}")
            return ExecuteResponse.failure(RunnerError.INVALID_GUEST_RESPONSE)
        body_b64: str | None = None
        size = 0
        if body is not None and bulk:
            # radix-64 text from the bulk export: translated to the contract's base64, never decoded.
            try:
                body_b64, size = base64_from_radix64(body)
            except (MalformedBodyText, AttributeError, TypeError):
                return ExecuteResponse.failure(RunnerError.INVALID_GUEST_RESPONSE)
        elif body is not None:
            size = len(body)
        if body is not None and size > self.settings.runner_max_response_body_bytes:
            emit("runner", "error", f"guest response body of {size} bytes exceeds the cap")
            return ExecuteResponse.failure(RunnerError.PAYLOAD_TOO_LARGE)
        if body is not None and body_b64 is None:
            body_b64 = base64.b64encode(body).decode()
        return ExecuteResponse(status=status, headers=headers, body_b64=body_b64)

    def _flush_output(self, capture: OutputCapture, stream: str, level: str, emit: Any, slack: int = 0) -> None:
        # Cut `slack` bytes later than the limit so a secret straddling the cut is still
        # masked whole; `_publish` then cuts at the limit.
        for line, _ in capture.lines(self.settings.runner_output_max_line_bytes + slack):
            emit(stream, level, line)
        if capture.dropped:
            emit("runner", "warn", f"{stream}: {capture.dropped} bytes dropped (per-request cap)")

    def _publish(self, req: ExecuteRequest, request_id: str, stream: str, level: str, message: str,
                 masks: SecretMasker | list[str] | None = None) -> None:
        masker = masks if isinstance(masks, SecretMasker) else SecretMasker(masks or ())
        message, redacted = masker.mask(message)
        if redacted:
            metrics.DEBUG_LINES_MASKED.inc()
        text, truncated = truncate_utf8(message.encode(), self.settings.runner_output_max_line_bytes)
        ctx = req.context
        event = DebugEvent(tenant_id=ctx.tenant_id, extension_id=ctx.extension_id, install_id=ctx.install_id,
                           version_id=ctx.version_id, request_id=request_id, stream=stream,  # type: ignore[arg-type]
                           level=level, message=text, truncated=truncated,  # type: ignore[arg-type]
                           redacted=redacted)
        try:
            self.debug.publish(event)
        except Exception:  # noqa: BLE001 - debug output must never fail a request
            log.warning("debug sink failed", exc_info=True)

    # --- per-request inputs, cached by version ----------------------------------------

    def _handler_type(self, content_hash: str, handler: Any, store: Store) -> Any:
        """The `handler` export's FuncType, read once per component: a component's types
        never change, and re-reading them costs more than the call for small guests."""
        fty = self._handler_types.get(content_hash)
        if fty is None:
            fty = handler.type(store)
            with self._types_lock:
                if len(self._handler_types) >= 4 * self.settings.runner_component_cache_size:
                    self._handler_types.clear()
                self._handler_types[content_hash] = fty
        return fty

    def _component(self, content_hash: str) -> tuple[Any, str | None]:
        """(component, the export to call for bulk bodies or None for the plain `handler`)."""
        try:
            component, bulk_export = self.components.get_with_export(content_hash)
            metrics.record_artifact_lookup(hit=True)
            return component, bulk_export if self.settings.runner_bulk_bodies else None
        except ComponentNotCompiledError:
            metrics.record_artifact_lookup(hit=False)
            try:
                self.bundle_store.component_path(content_hash)
            except BundleNotFoundError:
                raise _Failure(RunnerError.BUNDLE_NOT_FOUND) from None
            # Never compile on the request path: start it in the background, fail this one.
            self._compile_in_background(content_hash)
            raise _Failure(RunnerError.COMPONENT_NOT_READY) from None
        except WasmtimeError:
            log.exception("artifact for %s does not load", content_hash)
            raise _Failure(RunnerError.COMPONENT_INCOMPATIBLE) from None

    def _secrets(self, req: ExecuteRequest, caps: frozenset[str]) -> SecretsView:
        env: SecretEnvelope | None = req.secret_envelope
        if env is None or SECRETS_GET not in caps:
            return SecretsView()
        ctx = req.context
        install = ctx.install_id or ""
        key = (ctx.tenant_id, install, env.version, env.key_id,
               hashlib.sha256(env.ciphertext_b64.encode()).hexdigest())
        if envelope_expired(env):  # checked on every request, cached values or not
            return SecretsView(expired=True)
        cached = self._secrets_cache.get(key)
        if cached is not None:
            return SecretsView(values=cached)
        try:
            values = open_envelope(env, keyring=self.keyring, tenant_id=ctx.tenant_id, install_id=install)
        except EnvelopeExpiredError:
            return SecretsView(expired=True)
        except (EnvelopeError, ValueError, binascii.Error):
            raise _Failure(RunnerError.SECRET_DECRYPT_FAILED) from None
        self._secrets_cache.put(key, values)
        return SecretsView(values=values)

    def _config_items(self, req: ExecuteRequest, version: str | None) -> list[tuple[str, str]]:
        ctx = req.context
        digest = hashlib.sha256(json.dumps(ctx.config, sort_keys=True).encode()).hexdigest()
        key = (ctx.tenant_id, ctx.install_id or "", version or "", digest)
        items = self._config_cache.get(key)
        if items is None:
            items = sorted(ctx.config.items())
            self._config_cache.put(key, items)
        return items

    def warm(self) -> list[str]:
        """Load the most recently used compiled components (`runner_warm_components`) into
        the cache; processes call it at start so a restart costs no first-request load."""
        n = self.settings.runner_warm_components
        warmed = self.components.warm(n) if n > 0 else []
        # Components published before the current bulk transform: rebuilt one at a time in
        # the background (never on the request path); meanwhile their earlier artifacts
        # serve through the plain `handler`.
        if self.settings.runner_rebuild_outdated_artifacts and self.components.outdated_on_disk():
            threading.Thread(target=self._rebuild_outdated, name="extgate-rebuild", daemon=True).start()
        return warmed

    def _rebuild_outdated(self) -> None:
        for content_hash, outcome in rebuild_outdated(self.settings.compiled_dir, self.bundle_store.component_path,
                                                      self.engine_options, on_done=self.components.evict):
            log.info("artifact of %s rebuilt: %s", content_hash, outcome)

    def close(self) -> None:
        self.scheduler.close()
        self.http_client.close()
        close_debug = getattr(self.debug, "close", None)
        if self._owns_debug and close_debug is not None:
            close_debug()


# --- helpers (pure) ---------------------------------------------------------------------


def check_routing(req: ExecuteRequest, h: Mapping[str, str]) -> RunnerError | None:
    """Transport headers must agree with the body (upstream trusts one and uses the other)."""
    tenant, extension = h.get(ex.H_TENANT, "").strip(), h.get(ex.H_EXTENSION, "").strip()
    if not tenant or not extension:
        return RunnerError.MISSING_ROUTING_HEADERS
    ctx = req.context
    if tenant != ctx.tenant_id or extension != ctx.extension_id:
        return RunnerError.TENANT_MISMATCH
    install, version = h.get(ex.H_INSTALL_ID), h.get(ex.H_VERSION_ID)
    if install is not None and install != (ctx.install_id or ""):
        return RunnerError.TENANT_MISMATCH
    if version is not None and version != (ctx.version_id or ""):
        return RunnerError.VERSION_MISMATCH
    secrets_version = h.get(ex.H_SECRETS_VERSION)
    envelope = req.secret_envelope
    if secrets_version is not None and envelope is not None and secrets_version != envelope.version:
        return RunnerError.VERSION_MISMATCH
    return None


def envelope_expired(env: SecretEnvelope, now: datetime | None = None) -> bool:
    if env.expires_at is None:
        return False
    expires = env.expires_at if env.expires_at.tzinfo else env.expires_at.replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) >= expires


def caller_id(req: ExecuteRequest) -> str:
    """Who made the call, for idempotency scoping (empty when the gateway sent no user)."""
    return req.user.user_id if req.user is not None else ""


def request_fingerprint(req: ExecuteRequest) -> str:
    doc = [req.context.install_id, req.context.content_hash, caller_id(req), req.http.method.upper(),
           req.http.path, sorted(req.http.query.items()), req.http.body_b64 or ""]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def decode_body(body_b64: str | None, limit: int) -> bytes | None:
    if body_b64 is None:
        return None
    if len(body_b64) > (limit // 3 + 1) * 4 + 4:
        raise _Failure(RunnerError.PAYLOAD_TOO_LARGE)
    try:
        body = base64.b64decode(body_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _Failure(RunnerError.INVALID_REQUEST) from None
    if len(body) > limit:
        raise _Failure(RunnerError.PAYLOAD_TOO_LARGE)
    return body


def bulk_body_text(body_b64: str | None, limit: int) -> str | None:
    """The request body for a bulk export: radix-64 text (one string across the C API).
    Canonical base64 - what the gateway sends - is translated without being decoded;
    anything else goes through `decode_body`, so both paths accept and refuse alike."""
    if body_b64 is None:
        return None
    size = canonical_base64_size(body_b64)
    if size is None:
        body = decode_body(body_b64, limit)
        return None if body is None else radix64_from_bytes(body)
    if len(body_b64) > (limit // 3 + 1) * 4 + 4 or size > limit:
        raise _Failure(RunnerError.PAYLOAD_TOO_LARGE)
    return radix64_from_base64(body_b64)


def guest_url(path: str, query: Mapping[str, str]) -> str:
    if not query:
        return path
    return path + ("&" if "?" in path else "?") + urlencode(list(query.items()))


def guest_headers(headers: Mapping[str, str], request_id: str) -> list[tuple[str, str]]:
    out = [(k.lower(), v) for k, v in headers.items() if k.lower() in ex.GUEST_HEADER_ALLOWLIST]
    if not any(k == "x-request-id" for k, _ in out):
        out.append(("x-request-id", request_id))
    return out
