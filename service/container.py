"""The service's long-lived objects, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.config import AuditSettings
from audit.sql import SqlAuditLog
from runner.contract.bundle_store import LocalBundleStore
from runner.contract.envelope import Keyring
from service.audit_trail import policy_event_hook
from service.auth.tokens import TokenVerifier
from service.authz import Authorizer
from service.db import Database, create_database
from service.db.migrate import upgrade
from service.debug.config import DebugSessionSettings
from service.debug.runtime import build_debug_runtime
from service.denials import DenialRecorder
from service.gateway import build_gateway
from service.observability.readiness import register_observability
from service.policy import CedarAuthorizer, PolicyService
from service.registry.publishing import ComponentValidator, SignaturePolicy
from service.registry.signing import parse_trusted_keys
from service.settings import Settings


@dataclass
class ServiceContainer:
    settings: Settings
    db: Database
    bundle_store: LocalBundleStore
    verifier: TokenVerifier
    keyring: Keyring
    authorizer: Authorizer
    signature_policy: SignaturePolicy
    validate_component: ComponentValidator | None
    audit: Any | None = None
    policy: Any | None = None
    gateway: Any | None = None  # service.gateway.Gateway (runner transport, rate limits, idempotency)
    debug: Any | None = None  # service.debug.runtime.DebugRuntime (debug sessions and the SSE hub)
    denials: DenialRecorder | None = None  # bounded denial records, in the caller's log
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()  # the embedded runner's worker threads
        if self.debug is not None:
            self.debug.close()
        if self.policy is not None:
            self.policy.stop_watching()
        if self.denials is not None:
            self.denials.close()  # summaries of the open windows, before the log closes
        if self.audit is not None:
            self.audit.close()
        self.db.dispose()


def default_component_validator(settings: Settings) -> ComponentValidator:
    """Validate and precompile in a subprocess (compilation peaks at ~350 MB RSS)."""
    from runner.compiler import CompileFailedError, ComponentRejectedError, bulk_summary, compile_component
    from runner.engine import EngineOptions
    from runner.settings import RunnerSettings
    from service.errors import InvalidInput

    # The artifact key includes the engine configuration: compile with the runners' own
    # (EXTGATE_RUNNER_FUEL, EXTGATE_RUNNER_COMPILED_DIR), or they would compile on first use.
    runner_settings = RunnerSettings(data_dir=settings.data_dir)
    options = EngineOptions(consume_fuel=runner_settings.runner_fuel)

    def validate(component: bytes, content_hash: str) -> str:
        try:
            report = compile_component(component, runner_settings.compiled_dir, content_hash=content_hash,
                                       options=options)
        except ComponentRejectedError as exc:
            raise InvalidInput(str(exc), code="component_rejected") from exc
        except CompileFailedError as exc:
            raise InvalidInput(str(exc), code="component_invalid") from exc
        return bulk_summary(report)  # `ext publish` prints it: bulk bodies, or why not

    return validate


def build_audit_log(settings: Settings, db: Database, audit_settings: AuditSettings | None) -> SqlAuditLog:
    log = SqlAuditLog.from_settings(
        db.engine,
        audit_settings or AuditSettings(),
        data_dir=settings.data_dir,
        embedded=settings.is_embedded_database,
    )
    log.start()
    return log


def build_container(
    settings: Settings,
    *,
    audit_settings: AuditSettings | None = None,
    auto_migrate: bool | None = None,
    validate_component: ComponentValidator | None | str = "default",
) -> ServiceContainer:
    db = create_database(settings.effective_database_url)
    if auto_migrate if auto_migrate is not None else settings.is_embedded_database:
        upgrade(db.engine)
    trusted = parse_trusted_keys(settings.trusted_publisher_keys) if settings.trusted_publisher_keys else {}
    validator = default_component_validator(settings) if validate_component == "default" else validate_component
    # Cedar decides every admin, policy and audit action; with no valid bundle it denies all.
    audit_log = build_audit_log(settings, db, audit_settings)
    policy = PolicyService.from_settings(settings)
    policy.on_event(policy_event_hook(audit_log))
    policy.start()
    denials = DenialRecorder(audit_log, per_window=settings.audit_denials_per_window,
                             window_s=settings.audit_denial_window_seconds)
    denials.start()
    services = ServiceContainer(
        settings=settings,
        db=db,
        bundle_store=LocalBundleStore(settings.bundle_dir),
        verifier=TokenVerifier(settings),
        keyring=settings.keyring,
        authorizer=CedarAuthorizer(policy),
        signature_policy=SignaturePolicy(trusted_keys=trusted, require_signed=settings.require_signed_bundles),
        validate_component=validator,  # type: ignore[arg-type]
        policy=policy,
        audit=audit_log,
        denials=denials,
    )
    services.gateway = build_gateway(services)
    services.debug = build_debug_runtime(DebugSessionSettings(), db=db, policy=policy, audit=audit_log,
                                         denials=denials)
    register_observability(services)  # readiness probes, policy metrics, scrape-time state
    return services
