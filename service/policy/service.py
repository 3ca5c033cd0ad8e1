"""The policy service: the active engine, explicit activation, rollback, status and events.

Decisions read one attribute (the active engine), so a swap is atomic: a request sees
the old bundle or the new one, never a mix.

Nothing goes live by accident. A policy folder becomes active only through an explicit
`reload` (CLI `extgate policy reload`, API `POST /api/policy/reload`) or `rollback`, by a
named actor. The one exception is bootstrap: when no revision has ever been active, the
folder is activated once, by actor `bootstrap`. Servers and CLI verbs otherwise adopt the
store's active revision and never a changed folder; `status` reports a folder that differs
from the active revision.

A candidate is activated only after it compiles against its schema, passes every policy
test in its `tests/` folder, reaches the minimum test coverage (unless the actor allows
untested policies, which is recorded), and answers the service's own request shapes
without errors. Each activation writes exactly one audit record *before* the swap: no
record, no activation (`ServiceUnavailable` `audit_unavailable`, the active bundle
unchanged). Every activated bundle is kept, so every revision a recorded decision names
stays loadable.

Events (`on_event(kind, revision, detail)`), written to the audit log by the service:
  policy.reloaded     a new revision became active (detail: previous, via, actor, origin,
                      changed policy ids, coverage, allow_untested)
  policy.rejected     a candidate was refused (detail: problems, actor)
  policy.rolled_back  an earlier revision became active again (same detail as reloaded)
A process that picks up a revision another process activated only logs it: that
activation has its record already.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit import actions
from service.auth.principal import KNOWN_ROLES, Principal
from service.errors import ServiceUnavailable
from service.observability.metrics import record_decision
from service.policy.bundle import Bundle, check, compile_bundle
from service.policy.changes import PolicyChanges, compare_policies, schema_text
from service.policy.engine import DenyAllEngine, PolicyEngine
from service.policy.model import DebugCounts, Decision, EndpointMatch, InstallFacts
from service.policy.source import BundleError, BundleSource, Problem
from service.policy.store import BundleStore, RevisionNotFound, StoreBusy, StoreState
from service.policy.testing import run_tests

if TYPE_CHECKING:
    from datetime import datetime

    from service.settings import Settings

log = logging.getLogger("extgate.policy")

EventHook = Callable[[str, str | None, dict[str, Any]], None]

RELOADED = actions.POLICY_RELOADED
REJECTED = actions.POLICY_REJECTED
ROLLED_BACK = actions.POLICY_ROLLED_BACK

BOOTSTRAP_ACTOR = "bootstrap"
BUSY_MESSAGE = "another policy reload or rollback is in progress; the active bundle is unchanged, try again"


def iso_time(ts: float | None) -> str | None:
    """ISO 8601 UTC with seconds, e.g. 2026-12-04T17:00:31Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


class CandidateRejected(Exception):
    """A bundle that did not become active; the previous one is still serving."""

    code = "policy_rejected"

    def __init__(self, revision: str | None, problems: list[Problem]) -> None:
        self.revision = revision
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "problems": [p.to_dict() for p in self.problems]}


class ActivationInProgress(CandidateRejected):
    """Another reload or rollback holds the store: this one is refused, not queued."""

    code = "policy_activation_in_progress"


@dataclass(frozen=True)
class Coverage:
    """How much of a candidate its tests exercise, and what activation allowed."""

    policies: int
    tested: int
    untested: tuple[str, ...]
    minimum: float
    allow_untested: bool = False

    @property
    def ratio(self) -> float:
        return 1.0 if not self.policies else self.tested / self.policies

    def to_detail(self) -> dict[str, Any]:
        # The audit log takes no floats: coverage as a percentage string.
        return {
            "coverage": f"{self.ratio:.2%}",
            "min_coverage": f"{self.minimum:.2%}",
            "untested": list(self.untested),
            "allow_untested": self.allow_untested,
        }


@dataclass(frozen=True)
class FolderState:
    """The policy folder compared with the active revision (what `status` reports)."""

    path: str
    revision: str | None
    differs: bool
    changes: PolicyChanges | None = None
    problems: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        if self.revision is None:
            return f"folder cannot be read: {'; '.join(self.problems)}"
        if not self.differs:
            return "folder matches the active revision"
        if self.problems:
            return (f"folder differs from the active revision and does not compile ({len(self.problems)} "
                    "problems), not active")
        changes = self.changes or PolicyChanges()
        what = f"{changes.count} policies changed" if changes.count else "no policy changed"
        if changes.schema_changed:
            what += ", schema changed"
        return f"folder differs from the active revision: {what}, not active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "revision": self.revision,
            "differs": self.differs,
            "changes": self.changes.to_dict() if self.changes else None,
            "problems": list(self.problems),
            "message": self.message,
        }


@dataclass(frozen=True)
class PolicyStatus:
    active_revision: str | None
    activated_at: float | None
    loaded_at: float | None
    origin: str | None
    policies: int
    last_error: dict[str, Any] | None
    history: list[dict[str, Any]]
    available_revisions: list[str]
    folder: FolderState | None = None

    def to_dict(self) -> dict[str, Any]:
        last_error = dict(self.last_error) if self.last_error else None
        if last_error and isinstance(last_error.get("at"), int | float):
            last_error["at"] = iso_time(last_error["at"])
        return {
            "active_revision": self.active_revision,
            "activated_at": iso_time(self.activated_at),
            "loaded_at": iso_time(self.loaded_at),
            "origin": self.origin,
            "policies": self.policies,
            "last_error": last_error,
            "history": [{**h, "activated_at": iso_time(h.get("activated_at"))} for h in self.history],
            "available_revisions": self.available_revisions,
            "folder": self.folder.to_dict() if self.folder else None,
        }


def smoke_test(engine: PolicyEngine) -> list[Problem]:
    """The service's own request shapes must fit the candidate's schema (no errors)."""
    principal = Principal("smoke-test", "smoke", frozenset(KNOWN_ROLES))
    install = InstallFacts("smoke", "smoke-install", "ext", "pub.ext", frozenset({"cap:debug.logs"}))
    decisions = [
        engine.decide_invoke(principal, install, "GET", EndpointMatch(True, "/")),
        engine.decide_invoke(principal, install, "POST", EndpointMatch(False)),
        engine.decide_debug_view(principal, install, DebugCounts(0, 1, 0, 1), "smoke test"),
        engine.decide_admin(principal, "install.read", tenant_id="smoke"),
        engine.decide_admin(principal, "policy.read", tenant_id=None),
    ]
    return [
        Problem("<schema>", f"the service's {d.action!r} requests do not fit the schema: {'; '.join(d.errors)}")
        for d in decisions
        if d.errors
    ]


@dataclass(frozen=True)
class Prepared:
    bundle: Bundle
    engine: PolicyEngine
    coverage: Coverage | None = field(default=None)


def prepare(
    source: BundleSource,
    *,
    require_tests: bool = True,
    min_coverage: float = 0.0,
    allow_untested: bool = False,
) -> Prepared:
    """Compile, test, check coverage and smoke-test a candidate; raise CandidateRejected on any failure."""
    try:
        bundle = compile_bundle(source)
    except BundleError as exc:
        raise CandidateRejected(source.revision, exc.problems) from None
    engine = PolicyEngine(bundle)
    problems = smoke_test(engine)
    coverage = None
    if require_tests:
        report = run_tests(bundle, engine)
        problems.extend(report.problems)
        problems.extend(Problem(r.file, f"test failed: {r.label}: {r.message}") for r in report.failed)
        untested = tuple(report.uncovered)
        coverage = Coverage(len(bundle.policies), len(bundle.policies) - len(untested), untested,
                            min_coverage, allow_untested)
        if coverage.ratio + 1e-9 < min_coverage and not allow_untested:
            problems.append(Problem(
                "<tests>",
                f"test coverage {coverage.ratio:.0%} is below the required {min_coverage:.0%}: "
                f"{len(untested)} policies determine no test ({', '.join(untested)}); add tests, "
                "or a platform admin may activate with --allow-untested (recorded in the audit log)",
            ))
            problems.extend(
                Problem(info.file, "untested: no policy test is determined by this policy", info.line, info.id)
                for info in (bundle.policies[pid] for pid in untested)
            )
    if problems:
        raise CandidateRejected(source.revision, problems)
    return Prepared(bundle, engine, coverage)


class PolicyService:
    def __init__(
        self,
        policy_dir: Path | str,
        *,
        store: BundleStore | None = None,
        require_tests: bool = True,
        min_coverage: float = 1.0,
    ) -> None:
        self.policy_dir = Path(policy_dir).resolve()
        self.store = store or BundleStore(None)
        self.require_tests = require_tests
        self.min_coverage = min_coverage
        self._engine: PolicyEngine | DenyAllEngine = DenyAllEngine()
        self._hooks: list[EventHook] = []
        self._lock = threading.RLock()  # guards the swap and sync within this process
        self._activating = threading.Lock()  # one reload/rollback at a time in this process
        self._seen_stamp: float | None = None
        self._last_error: dict[str, Any] | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyService:
        return cls(
            settings.policy_dir,
            store=BundleStore(settings.data_dir / "policy"),
            min_coverage=settings.policy_min_coverage,
        )

    # -- events --------------------------------------------------------------------
    def on_event(self, hook: EventHook) -> None:
        """Register `hook(kind, revision, detail)`. For activations a failing hook aborts the
        activation (no record, no change); for rejections its failure is only logged."""
        self._hooks.append(hook)

    def _record(self, kind: str, revision: str | None, detail: dict[str, Any]) -> None:
        """The activation's record, durable before the swap; any failure aborts the activation."""
        log.info("%s %s by %s", kind, revision, detail.get("actor"))
        for hook in list(self._hooks):
            try:
                hook(kind, revision, detail)
            except Exception as exc:
                log.error("policy %s not recorded (%s): the active bundle is unchanged", kind, type(exc).__name__)
                raise ServiceUnavailable(
                    "the audit log is unavailable, so the policy change was not made; retry",
                    code="audit_unavailable",
                ) from exc

    def _emit_rejected(self, revision: str | None, detail: dict[str, Any]) -> None:
        log.warning("%s %s by %s", REJECTED, revision, detail.get("actor"))
        for hook in list(self._hooks):
            try:
                hook(REJECTED, revision, detail)
            except Exception:  # nothing changed; the rejection is also kept as last_error
                log.exception("policy rejection could not be recorded")

    # -- state -----------------------------------------------------------------------
    @property
    def engine(self) -> PolicyEngine | DenyAllEngine:
        return self._engine

    @property
    def revision(self) -> str:
        return self._engine.revision

    @property
    def bundle(self) -> Bundle | None:
        engine = self._engine
        return engine.bundle if isinstance(engine, PolicyEngine) else None

    def _active_bundle(self, state: StoreState) -> Bundle | None:
        """The store's active bundle (this process's, when it serves that revision)."""
        if not state.active:
            return None
        bundle = self.bundle
        if bundle is not None and bundle.revision == state.active:
            return bundle
        try:
            return compile_bundle(self.store.load(state.active))
        except (BundleError, RevisionNotFound, OSError, ValueError):
            return None

    def folder_state(self, state: StoreState | None = None) -> FolderState:
        """The policy folder against the active revision. Reads only."""
        state = state or self.store.read_state()
        try:
            source = BundleSource.from_dir(self.policy_dir)
        except (BundleError, OSError, UnicodeDecodeError) as exc:
            problems = tuple(str(p) for p in exc.problems) if isinstance(exc, BundleError) else (str(exc),)
            return FolderState(str(self.policy_dir), None, True, problems=problems)
        if source.revision == state.active:
            return FolderState(str(self.policy_dir), source.revision, False)
        candidate, found = check(source)
        if candidate is None:
            return FolderState(str(self.policy_dir), source.revision, True, problems=tuple(str(p) for p in found))
        active = self._active_bundle(state)
        changes = compare_policies(
            active.policies if active else None, candidate.policies,
            old_schema=schema_text(active.source.files) if active else None,
            new_schema=schema_text(source.files),
        )
        return FolderState(str(self.policy_dir), source.revision, True, changes)

    def status(self, *, include_folder: bool = True) -> PolicyStatus:
        """What is active (the store's view, shared by every process). Reads only."""
        state = self.store.read_state()
        active = self._active_bundle(state)
        return PolicyStatus(
            active_revision=state.active,
            activated_at=state.activated_at,
            loaded_at=active.loaded_at if active is not None and active is self.bundle else None,
            origin=active.source.origin if active else None,
            policies=len(active.policies) if active else 0,
            last_error=self._last_error or state.last_error,
            history=[h.__dict__ for h in state.history],
            available_revisions=self.store.revisions(),
            folder=self.folder_state(state) if include_folder else None,
        )

    def _swap(self, engine: PolicyEngine) -> None:
        self._engine = engine  # the atomic swap
        self._last_error = None

    # -- activation ------------------------------------------------------------------
    def _reject(
        self, exc: CandidateRejected, state: StoreState | None, actor: str | None, origin: str,
        actor_ip: str | None = None,
    ) -> None:
        error = {**exc.to_dict(), "at": time.time(), "actor": actor, "origin": origin}
        if state is not None:  # we hold the store: keep it as the shared last error
            state.last_error = error
            self.store.write_state(state)
        self._last_error = error
        problems = error["problems"]
        self._emit_rejected(exc.revision, {
            "actor": actor, "actor_ip": actor_ip, "origin": origin, "problems": problems[:20],
            "problem_count": len(problems), "code": exc.code,
        })

    def _exclusive(self, actor: str | None, origin: str, actor_ip: str | None) -> _Exclusive:
        return _Exclusive(self, actor, origin, actor_ip)

    def _activate(
        self,
        source: BundleSource,
        state: StoreState,
        *,
        kind: str,
        via: str,
        actor: str | None,
        actor_ip: str | None,
        origin: str,
        allow_untested: bool,
    ) -> bool:
        """Validate `source`, record the activation, then make it active. Caller holds the store.
        Returns False when it was already the active revision (nothing recorded or changed)."""
        if state.active == source.revision and via != "rollback":
            # Already active (validated when it was activated, maybe by another process):
            # serve it here too; nothing is activated, so nothing is recorded.
            with self._lock:
                if self.bundle is None or self.bundle.revision != source.revision:
                    self._swap(PolicyEngine(compile_bundle(source)))
                if state.last_error:
                    state.last_error = None
                    self.store.write_state(state)
                self._last_error = None
            return False
        try:
            prepared = prepare(source, require_tests=self.require_tests, min_coverage=self.min_coverage,
                               allow_untested=allow_untested)
        except CandidateRejected as exc:
            self._reject(exc, state, actor, origin, actor_ip)
            raise
        previous = self._active_bundle(state)
        changes = compare_policies(
            previous.policies if previous else None, prepared.bundle.policies,
            old_schema=schema_text(previous.source.files) if previous else None,
            new_schema=schema_text(source.files),
        )
        detail: dict[str, Any] = {
            "previous": state.active, "via": via, "actor": actor, "actor_ip": actor_ip, "origin": origin,
            "changes": changes.to_dict(),
        }
        if prepared.coverage is not None:
            detail.update(prepared.coverage.to_detail())
        self.store.save(source)  # content-addressed and inert until the state names it
        self._record(kind, source.revision, detail)  # no record, no change
        with self._lock:
            if source.origin == str(self.policy_dir):
                state.dir_revision = source.revision
            state.last_error = None
            self.store.record_activation(state, source.revision, via, actor)
            self.store.write_state(state)
            self._seen_stamp = self.store.state_stamp()
            self._swap(prepared.engine)
        return True

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> PolicyStatus:
        """Serve the store's active revision. Only when no revision was ever active is the
        policy folder activated (once, actor `bootstrap`); a changed folder is never adopted."""
        with self._lock:
            state = self.store.read_state()
            if state.active is None and not state.history:
                self._bootstrap()
            if self.bundle is None:
                self.sync(force=True)
            if self.bundle is None:
                log.error("no valid policy bundle: every request is denied")
                if self._last_error is None:
                    message = f"no valid policy bundle in {self.policy_dir} and none activated before"
                    self._last_error = {"revision": None, "problems": [{"message": message}], "at": time.time()}
            return self.status(include_folder=False)

    def _bootstrap(self) -> None:
        origin = str(self.policy_dir)
        with self.store.locked():  # a concurrent first start waits here, then finds it done
            state = self.store.read_state()
            if state.active is not None or state.history:
                return
            try:
                source = BundleSource.from_dir(self.policy_dir)
                self._activate(source, state, kind=RELOADED, via="bootstrap", actor=BOOTSTRAP_ACTOR,
                               actor_ip=None, origin=origin, allow_untested=False)
            except BundleError as exc:
                self._reject(CandidateRejected(None, exc.problems), state, BOOTSTRAP_ACTOR, origin)
            except CandidateRejected:
                log.error("policy directory %s rejected at bootstrap", self.policy_dir)
            except ServiceUnavailable:
                log.error("policy bootstrap not activated: the audit log is unavailable")

    def reload(
        self,
        directory: Path | str | None = None,
        *,
        actor: str | None = None,
        actor_ip: str | None = None,
        allow_untested: bool = False,
    ) -> PolicyStatus:
        """Validate a policy folder (default: the configured one) and activate it.

        Raises CandidateRejected (ActivationInProgress when another activation runs), or
        ServiceUnavailable when its audit record cannot be written; the active bundle is
        unchanged in every such case."""
        directory = Path(directory).resolve() if directory is not None else self.policy_dir
        origin = str(directory)
        with self._exclusive(actor, origin, actor_ip):
            state = self.store.read_state()
            try:
                source = BundleSource.from_dir(directory)
            except BundleError as exc:
                rejected = CandidateRejected(None, exc.problems)
                self._reject(rejected, state, actor, origin, actor_ip)
                raise rejected from None
            self._activate(source, state, kind=RELOADED, via="reload", actor=actor, actor_ip=actor_ip,
                           origin=origin, allow_untested=allow_untested)
        return self.status()

    def rollback(
        self, revision: str, *, actor: str | None = None, actor_ip: str | None = None, allow_untested: bool = False
    ) -> PolicyStatus:
        """Re-activate a kept revision (prefix accepted), validated like a reload.
        Raises RevisionNotFound, CandidateRejected or ServiceUnavailable."""
        with self._exclusive(actor, f"rollback {revision}", actor_ip):
            full = self.store.resolve(revision)
            source = self.store.load(full)
            state = self.store.read_state()
            self._activate(source, state, kind=ROLLED_BACK, via="rollback", actor=actor, actor_ip=actor_ip,
                           origin=f"rollback {full}", allow_untested=allow_untested)
        return self.status()

    def sync(self, *, force: bool = False) -> bool:
        """Serve the store's active revision if another process activated one. True if swapped.
        Adopting writes no audit record: the activation has its own."""
        stamp = self.store.state_stamp()
        if not force and stamp == self._seen_stamp:
            return False
        with self._lock:
            state = self.store.read_state()
            self._seen_stamp = stamp
            if not state.active or (self.bundle and self.bundle.revision == state.active):
                return False
            try:
                engine = PolicyEngine(compile_bundle(self.store.load(state.active)))
            except (BundleError, RevisionNotFound, OSError, ValueError) as exc:
                self._last_error = {"revision": state.active, "problems": [{"message": str(exc)}], "at": time.time()}
                log.error("cannot serve policy revision %s: %s", state.active, exc)
                return False
            previous = self.revision
            self._swap(engine)
        log.info("serving policy revision %s (was %s), activated by another process", state.active, previous)
        return True

    def start_watching(self, interval: float = 2.0) -> None:
        """Poll the store in a daemon thread, to serve what another process activated."""
        if self._watcher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.sync()
                except Exception:
                    log.exception("policy watcher iteration failed")

        self._watcher = threading.Thread(target=loop, name="policy-watcher", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    # -- decisions (delegate to the active engine) -----------------------------------
    def decide_invoke(
        self,
        principal: Principal,
        install: InstallFacts,
        http_method: str,
        endpoint: EndpointMatch,
        *,
        path: str = "",
        now: datetime | None = None,
    ) -> Decision:
        started = time.perf_counter()
        decision = self._engine.decide_invoke(principal, install, http_method, endpoint, path=path, now=now)
        record_decision("invoke", decision, time.perf_counter() - started)
        return decision

    def decide_debug_view(
        self, principal: Principal, install: InstallFacts, counts: DebugCounts, justification: str | None = None,
        *, now: datetime | None = None,
    ) -> Decision:
        started = time.perf_counter()
        decision = self._engine.decide_debug_view(principal, install, counts, justification, now=now)
        record_decision("debug_view", decision, time.perf_counter() - started)
        return decision

    def decide_admin(self, principal: Principal, action: str, *, tenant_id: str | None) -> Decision:
        started = time.perf_counter()
        decision = self._engine.decide_admin(principal, action, tenant_id=tenant_id)
        record_decision("admin", decision, time.perf_counter() - started)
        return decision


class _Exclusive:
    """Holds this process's activation lock and the store's lock without waiting: a second
    reload or rollback is refused (ActivationInProgress, recorded as policy.rejected)."""

    def __init__(self, service: PolicyService, actor: str | None, origin: str, actor_ip: str | None) -> None:
        self.service, self.actor, self.origin, self.actor_ip = service, actor, origin, actor_ip
        self._store_lock: Any = None

    def __enter__(self) -> None:
        svc = self.service
        if not svc._activating.acquire(blocking=False):
            self._busy()
        try:
            self._store_lock = svc.store.try_locked()
            self._store_lock.__enter__()
        except StoreBusy:
            svc._activating.release()
            self._busy()

    def _busy(self) -> None:
        rejected = ActivationInProgress(None, [Problem("<policy store>", BUSY_MESSAGE)])
        self.service._reject(rejected, None, self.actor, self.origin, self.actor_ip)
        raise rejected

    def __exit__(self, *exc: object) -> None:
        try:
            self._store_lock.__exit__(*exc)
        finally:
            self.service._activating.release()
