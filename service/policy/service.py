"""The policy service: the active engine, hot reload, rollback, status and events.

Decisions read one attribute (the active engine), so a swap is atomic: a request sees
the old bundle or the new one, never a mix. A candidate becomes active only after it
compiles against its schema, passes every policy test in its `tests/` folder and
answers the service's own request shapes without errors; otherwise the last good
bundle stays active and the problems are kept as `last_error`. Activated bundles are
kept (the active one plus `keep` previous) for rollback.

Events (`on_event(kind, revision, detail)`) for the audit log:
  policy.reloaded     a new revision became active (detail: previous, via, actor, origin)
  policy.rejected     a candidate was refused (detail: problems, failed tests, actor)
  policy.rolled_back  an earlier revision became active again (detail: previous, actor)
  policy.adopted      this process picked up a revision another process activated
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit import actions
from service.auth.principal import KNOWN_ROLES, Principal
from service.policy.bundle import Bundle, compile_bundle
from service.policy.engine import DenyAllEngine, PolicyEngine
from service.policy.model import DebugCounts, Decision, EndpointMatch, InstallFacts
from service.policy.source import BundleError, BundleSource, Problem
from service.policy.store import BundleStore, RevisionNotFound, StoreState
from service.policy.testing import run_tests

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("extgate.policy")

EventHook = Callable[[str, str | None, dict[str, Any]], None]

RELOADED = actions.POLICY_RELOADED
REJECTED = actions.POLICY_REJECTED
ROLLED_BACK = actions.POLICY_ROLLED_BACK
ADOPTED = actions.POLICY_ADOPTED


class CandidateRejected(Exception):
    """A bundle that did not become active; the previous one is still serving."""

    def __init__(self, revision: str | None, problems: list[Problem]) -> None:
        self.revision = revision
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "problems": [p.to_dict() for p in self.problems]}


@dataclass(frozen=True)
class PolicyStatus:
    active_revision: str | None
    loaded_at: float | None
    origin: str | None
    policies: int
    last_error: dict[str, Any] | None
    history: list[dict[str, Any]]
    available_revisions: list[str]

    def to_dict(self) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None

        return {
            "active_revision": self.active_revision,
            "loaded_at": iso(self.loaded_at),
            "origin": self.origin,
            "policies": self.policies,
            "last_error": self.last_error,
            "history": [{**h, "activated_at": iso(h.get("activated_at"))} for h in self.history],
            "available_revisions": self.available_revisions,
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


def prepare(source: BundleSource, *, require_tests: bool = True) -> tuple[Bundle, PolicyEngine]:
    """Compile, test and smoke-test a candidate; raise CandidateRejected on any failure."""
    try:
        bundle = compile_bundle(source)
    except BundleError as exc:
        raise CandidateRejected(source.revision, exc.problems) from None
    engine = PolicyEngine(bundle)
    problems = smoke_test(engine)
    if require_tests:
        report = run_tests(bundle, engine)
        problems.extend(report.problems)
        problems.extend(Problem(r.file, f"test failed: {r.label}: {r.message}") for r in report.failed)
    if problems:
        raise CandidateRejected(source.revision, problems)
    return bundle, engine


class PolicyService:
    def __init__(
        self,
        policy_dir: Path | str,
        *,
        store: BundleStore | None = None,
        require_tests: bool = True,
    ) -> None:
        self.policy_dir = Path(policy_dir).resolve()
        self.store = store or BundleStore(None)
        self.require_tests = require_tests
        self._engine: PolicyEngine | DenyAllEngine = DenyAllEngine()
        self._hooks: list[EventHook] = []
        self._lock = threading.RLock()
        self._seen_stamp: float | None = None
        self._last_error: dict[str, Any] | None = None
        self._failed_dir_revision: str | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, *, keep: int = 10) -> PolicyService:
        return cls(settings.policy_dir, store=BundleStore(settings.data_dir / "policy", keep=keep))

    # -- events --------------------------------------------------------------------
    def on_event(self, hook: EventHook) -> None:
        """Register `hook(kind, revision, detail)`; exceptions in hooks are logged, not raised."""
        self._hooks.append(hook)

    def _emit(self, kind: str, revision: str | None, detail: dict[str, Any]) -> None:
        log.info("%s %s %s", kind, revision, detail)
        for hook in list(self._hooks):
            try:
                hook(kind, revision, detail)
            except Exception:  # an audit hiccup must not undo a validated swap
                log.exception("policy event hook failed for %s", kind)

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

    def status(self) -> PolicyStatus:
        state = self.store.read_state()
        bundle = self.bundle
        return PolicyStatus(
            active_revision=bundle.revision if bundle else None,
            loaded_at=bundle.loaded_at if bundle else None,
            origin=bundle.source.origin if bundle else None,
            policies=len(bundle.policies) if bundle else 0,
            last_error=self._last_error or state.last_error,
            history=[h.__dict__ for h in state.history],
            available_revisions=self.store.revisions(),
        )

    def _activate(self, engine: PolicyEngine) -> str | None:
        previous = self.bundle.revision if self.bundle else None
        self._engine = engine  # the atomic swap
        self._last_error = None
        return previous

    def _reject(self, exc: CandidateRejected, state: StoreState, actor: str | None, origin: str) -> None:
        error = {**exc.to_dict(), "at": time.time(), "actor": actor, "origin": origin}
        state.last_error = error
        self.store.write_state(state)
        self._last_error = error
        self._emit(REJECTED, exc.revision, {"actor": actor, "origin": origin, "problems": error["problems"]})

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> PolicyStatus:
        """Load at process start: a changed policy directory is reloaded (validated);
        otherwise the store's active revision (which may be a rollback) is adopted."""
        with self._lock:
            state = self.store.read_state()
            try:
                dir_revision: str | None = BundleSource.from_dir(self.policy_dir).revision
            except BundleError:
                dir_revision = None
            if dir_revision is not None and dir_revision != state.dir_revision:
                try:
                    self.reload(actor="startup")
                except CandidateRejected:
                    log.error("policy directory %s rejected at startup", self.policy_dir)
            if self.bundle is None:
                self.sync(force=True)
            if self.bundle is None:
                log.error("no valid policy bundle: every request is denied")
                if self._last_error is None:
                    message = f"no valid policy bundle in {self.policy_dir} and none activated before"
                    self._last_error = {"revision": None, "problems": [{"message": message}], "at": time.time()}
            return self.status()

    def reload(self, directory: Path | str | None = None, *, actor: str | None = None) -> PolicyStatus:
        """Validate the policy directory as a candidate and activate it (or raise CandidateRejected)."""
        directory = Path(directory).resolve() if directory is not None else self.policy_dir
        with self._lock, self.store.locked():
            state = self.store.read_state()
            try:
                source = BundleSource.from_dir(directory)
            except BundleError as exc:
                rejected = CandidateRejected(None, exc.problems)
                self._reject(rejected, state, actor, str(directory))
                raise rejected from None
            try:
                _bundle, engine = prepare(source, require_tests=self.require_tests)
            except CandidateRejected as exc:
                if directory == self.policy_dir:
                    self._failed_dir_revision = source.revision
                self._reject(exc, state, actor, source.origin)
                raise
            self.store.save(source)
            if directory == self.policy_dir:
                state.dir_revision = source.revision
            state.last_error = None
            changed = state.active != source.revision or self.bundle is None
            if changed:
                self.store.record_activation(state, source.revision, "reload", actor)
            self.store.write_state(state)
            self._seen_stamp = self.store.state_stamp()
            previous = self._activate(engine)
        if changed:
            self._emit(RELOADED, source.revision, {"previous": previous, "actor": actor, "origin": source.origin})
        return self.status()

    def rollback(self, revision: str, *, actor: str | None = None) -> PolicyStatus:
        """Re-activate a kept revision (prefix accepted). Raises RevisionNotFound or CandidateRejected."""
        with self._lock, self.store.locked():
            full = self.store.resolve(revision)
            source = self.store.load(full)
            state = self.store.read_state()
            try:
                _bundle, engine = prepare(source, require_tests=self.require_tests)
            except CandidateRejected as exc:
                self._reject(exc, state, actor, f"rollback {full}")
                raise
            state.last_error = None
            self.store.record_activation(state, full, "rollback", actor)
            self.store.write_state(state)
            self._seen_stamp = self.store.state_stamp()
            previous = self._activate(engine)
        self._emit(ROLLED_BACK, full, {"previous": previous, "actor": actor})
        return self.status()

    def sync(self, *, force: bool = False) -> bool:
        """Adopt the store's active revision if another process changed it. True if swapped."""
        stamp = self.store.state_stamp()
        if not force and stamp == self._seen_stamp:
            return False
        with self._lock:
            state = self.store.read_state()
            self._seen_stamp = stamp
            if not state.active or (self.bundle and self.bundle.revision == state.active):
                return False
            try:
                source = self.store.load(state.active)
                engine = PolicyEngine(compile_bundle(source))
            except (BundleError, RevisionNotFound, OSError, ValueError) as exc:
                self._last_error = {"revision": state.active, "problems": [{"message": str(exc)}], "at": time.time()}
                log.error("cannot adopt policy revision %s: %s", state.active, exc)
                return False
            previous = self._activate(engine)
        self._emit(ADOPTED, state.active, {"previous": previous})
        return True

    def start_watching(self, interval: float = 2.0, *, watch_dir: bool = False) -> None:
        """Poll the store (and optionally the policy directory) in a daemon thread."""
        if self._watcher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.sync()
                    if watch_dir:
                        self._check_dir()
                except Exception:
                    log.exception("policy watcher iteration failed")

        self._watcher = threading.Thread(target=loop, name="policy-watcher", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    def _check_dir(self) -> None:
        try:
            revision = BundleSource.from_dir(self.policy_dir).revision
        except BundleError:
            return
        state = self.store.read_state()
        if revision in (state.dir_revision, self._failed_dir_revision):
            return
        with contextlib.suppress(CandidateRejected):  # recorded as last_error and an event
            self.reload(actor="file-watcher")

    # -- decisions (delegate to the active engine) -----------------------------------
    def decide_invoke(
        self,
        principal: Principal,
        install: InstallFacts,
        http_method: str,
        endpoint: EndpointMatch,
        *,
        path: str = "",
    ) -> Decision:
        return self._engine.decide_invoke(principal, install, http_method, endpoint, path=path)

    def decide_debug_view(
        self, principal: Principal, install: InstallFacts, counts: DebugCounts, justification: str | None = None
    ) -> Decision:
        return self._engine.decide_debug_view(principal, install, counts, justification)

    def decide_admin(self, principal: Principal, action: str, *, tenant_id: str | None) -> Decision:
        return self._engine.decide_admin(principal, action, tenant_id=tenant_id)
