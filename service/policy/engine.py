"""Decisions against one compiled bundle.

An engine is immutable and bound to one bundle; the service swaps whole engines. Per
request it looks up the action/resource slice and a cached, schema-validated
`Entities` handle, makes one native Cedar call, and maps the answer to a `Decision`.
Any evaluation error, or an answer that is neither Allow nor Deny, is a deny.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import cedarpy

from audit.canonical import canonical_json
from service.auth.principal import Principal
from service.policy import cedar_call
from service.policy.bundle import Bundle
from service.policy.entities import principal_key, request_entities
from service.policy.model import (
    ACTION_TYPE,
    DEBUG_VIEW,
    EVALUATION_ERROR_ID,
    INSTALL_TYPE,
    NO_BUNDLE_ID,
    PLATFORM_ID,
    PLATFORM_TYPE,
    READ,
    SAFE_METHODS,
    TENANT_TYPE,
    USER_TYPE,
    WRITE,
    DebugCounts,
    Decision,
    DecisionInputs,
    EndpointMatch,
    EntityRef,
    InstallFacts,
)
from service.policy.population import context_attributes_read

V = TypeVar("V")

EVALUATION_ERROR_REASON = "A policy could not be evaluated, so the request is denied (fail closed)."
NO_BUNDLE_REASON = "No valid policy bundle is active, so every request is denied."


class EntitiesError(ValueError):
    """Entities that do not conform to the bundle's schema."""


def invoke_action(http_method: str) -> str:
    """`read` for GET and HEAD, `write` for everything else."""
    return READ if http_method.upper() in SAFE_METHODS else WRITE


def epoch_minute(now: datetime | None = None) -> int:
    """Whole minutes since 1970-01-01T00:00Z at `now` (default: the current time).

    A naive `now` is taken as UTC."""
    if now is None:
        return int(time.time() // 60)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return int(now.timestamp() // 60)


_LAST_TIME: tuple[int, dict[str, Any]] = (-1, {})


def time_context(now: datetime | None = None) -> dict[str, Any]:
    """The context's `time` record: `now` (default: the current time) in UTC, truncated to
    the whole minute, with its hour, minute and ISO day of the week (1 = Monday ... 7 = Sunday).
    The record of the current minute is built once and shared (treat it as read-only)."""
    return time_record(epoch_minute(now))


def time_record(minute: int) -> dict[str, Any]:
    """`time_context` of the minute `minute` (minutes since the epoch), shared within a minute."""
    global _LAST_TIME
    last_minute, record = _LAST_TIME
    if last_minute == minute:
        return record
    record = _time_record(minute)
    _LAST_TIME = (minute, record)
    return record


def _time_record(minute: int) -> dict[str, Any]:
    at = datetime.fromtimestamp(minute * 60, UTC)
    stamp = f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:00Z"
    return {
        "datetime": {"__extn": {"fn": "datetime", "arg": stamp}},
        "hour": at.hour,
        "minute": at.minute,
        "dayOfWeek": at.isoweekday(),
    }


def invoke_context(
    http_method: str, endpoint: EndpointMatch, path: str = "", *, now: datetime | None = None
) -> dict[str, Any]:
    return {
        "method": http_method.upper(),
        "path": path,
        "endpointDeclared": bool(endpoint.declared),
        "endpointTemplate": (endpoint.template or "") if endpoint.declared else "",
        "time": time_context(now),
    }


def debug_context(counts: DebugCounts, justification: str | None, *, now: datetime | None = None) -> dict[str, Any]:
    text = (justification or "").strip()
    return {
        "tenantSessions": int(counts.tenant_sessions),
        "tenantSessionLimit": int(counts.tenant_limit),
        "streamSessions": int(counts.stream_sessions),
        "streamSessionLimit": int(counts.stream_limit),
        "justification": text,
        "justificationLength": len(text),
        "time": time_context(now),
    }


class _BoundedCache(Generic[V]):
    """Bounded map with FIFO eviction. Reads take no lock (a dict lookup is atomic)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        found = self._data.get(key)
        if found is not None:
            return found
        value = build()
        if self.capacity > 0:
            with self._lock:
                while len(self._data) >= self.capacity:
                    self._data.pop(next(iter(self._data)))
                self._data[key] = value
        return value

    def refresh(self, key: Hashable, value: V) -> None:
        """Replace the value of a key that is present (no eviction, no growth)."""
        if key in self._data:
            self._data[key] = value

    def __len__(self) -> int:
        return len(self._data)


# Longer request paths are decided without memoising (bounds the memo's memory).
MEMO_MAX_PATH = 512


@dataclass(frozen=True, slots=True)
class EntitySnapshot:
    """The entities of one decision key: canonical JSON bytes, their digest, and the
    schema-validated handle parsed from exactly those bytes (or why they do not fit)."""

    digest: str  # "sha256:<hex>" of `data`
    data: bytes
    handle: cedarpy.Entities | None
    error: str | None = None


def snapshot_bytes(entities: list[dict[str, Any]]) -> tuple[bytes, str]:
    """Canonical JSON of an entity list and its "sha256:<hex>" digest."""
    data = canonical_json(entities)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


class PolicyEngine:
    """Decisions for one bundle."""

    def __init__(self, bundle: Bundle, *, entity_cache_size: int = 4096, decision_memo_size: int = 8192) -> None:
        self.bundle = bundle
        self.revision = bundle.revision
        self._schema = bundle.schema
        self._reasons = {pid: info.reason for pid, info in bundle.policies.items()}
        self._effects = {pid: info.effect for pid, info in bundle.policies.items()}
        # Per decision key: the entities' canonical bytes, digest and parsed handle, built
        # once per entry (the digest is what decision records name).
        self._cache: _BoundedCache[EntitySnapshot] = _BoundedCache(entity_cache_size)
        # Invoke decisions by their complete input. Cedar evaluation is a pure function of
        # (policies, entities, request); the policies are this engine's own (a reload builds
        # a new engine, and this memo goes with the old one), the entities are a function
        # of (principal key, install facts), and the request of the rest of the key. So a
        # memoised answer is exactly what evaluating again would return — not a cache that
        # can go stale.
        self._invoke_memo: _BoundedCache[Decision] = _BoundedCache(decision_memo_size)
        read = context_attributes_read(info.est for info in bundle.policies.values())
        self._memo_path = read is None or "path" in read
        self._memo_time = read is None or "time" in read
        self._actions: dict[str, dict[str, str]] = {}
        self._full_set: cedarpy.PolicySet | None = None

    # -- entities -------------------------------------------------------------------
    def entities(self, data: list[dict[str, Any]] | str) -> cedarpy.Entities:
        """A schema-validated handle; raises EntitiesError naming the first bad entity."""
        text = data if isinstance(data, str) else json.dumps(data)
        try:
            return cedarpy.Entities.from_json_str(text, self._schema)
        except ValueError as exc:
            raise EntitiesError(describe_entity_error(text, self._schema, exc)) from None

    def snapshot(self, entities: list[dict[str, Any]]) -> EntitySnapshot:
        """Canonical bytes + digest of `entities`, and their handle (or the schema error)."""
        data, digest = snapshot_bytes(entities)
        try:
            return EntitySnapshot(digest, data, self.entities(data.decode("utf-8")))
        except EntitiesError as exc:
            return EntitySnapshot(digest, data, None, str(exc))

    def _cached_entities(self, key: Hashable, build: Callable[[], list[dict[str, Any]]]) -> EntitySnapshot:
        return self._cache.get_or_build(key, lambda: self.snapshot(build()))

    # -- core -------------------------------------------------------------------------
    def _action(self, action: str) -> dict[str, str]:
        found = self._actions.get(action)
        if found is None:
            found = self._actions[action] = {"type": ACTION_TYPE, "id": action}
        return found

    def decide(
        self,
        principal: EntityRef,
        action: str,
        resource: EntityRef,
        context: dict[str, Any] | str,
        entities: cedarpy.Entities,
        *,
        sliced: bool = True,
        resource_slug: str | None = None,
        inputs: DecisionInputs | None = None,
    ) -> Decision:
        """Evaluate one request (already-built entities). Errors => deny.

        `resource_slug`: the Install entity's `slug` in `entities`, when the caller built them
        (lets the slice leave out policies guarded on other slugs); None when not known."""
        if sliced:
            policies = self.bundle.slice_for(action, resource.type, resource.id, (principal.type, principal.id),
                                             resource_slug)
        else:
            policies = self.full_policy_set
        request = {
            "principal": {"type": principal.type, "id": principal.id},
            "action": self._action(action),
            "resource": {"type": resource.type, "id": resource.id},
            "context": context if isinstance(context, str) else json.dumps(context),
        }
        raw = cedar_call.authorize(request, policies, entities, self._schema)
        return self._to_decision(action, raw, inputs)

    @property
    def full_policy_set(self) -> cedarpy.PolicySet:
        """Every policy, unsliced (tests compare it with the slices)."""
        if self._full_set is None:
            self._full_set = self.bundle.policy_set()
        return self._full_set

    def _to_decision(
        self, action: str, raw: cedar_call.RawResult, inputs: DecisionInputs | None = None
    ) -> Decision:
        reasons = self._reasons
        if not raw.errors and raw.decision in ("Allow", "Deny"):
            ids = tuple(sorted(raw.reasons))
            return Decision(raw.decision == "Allow", action, ids, tuple(reasons.get(i, "") for i in ids), self.revision,
                            (), inputs)
        forbids = tuple(sorted(i for i in raw.reasons if self._effects.get(i) == "forbid"))
        ids = forbids or (EVALUATION_ERROR_ID,)
        texts = tuple(reasons.get(i, EVALUATION_ERROR_REASON) for i in ids)
        errors = tuple(raw.errors) or (f"no decision ({raw.decision})",)
        return Decision(False, action, ids, texts, self.revision, errors, inputs)

    # -- domain decisions ------------------------------------------------------------
    def _decide_for(
        self,
        key: Hashable,
        build: Callable[[], list[dict[str, Any]]],
        principal: EntityRef,
        action: str,
        resource: EntityRef,
        context: dict[str, Any] | str,
        resource_slug: str | None = None,
    ) -> Decision:
        snap = self._cached_entities(key, build)
        ctx = json.loads(context) if isinstance(context, str) else context
        inputs = DecisionInputs(principal, action, resource, ctx, snap.digest, snap.data)
        if snap.handle is None:  # the bundle's schema does not fit our facts: deny
            return self._to_decision(action, cedar_call.RawResult("NoDecision", [], [str(snap.error)]), inputs)
        return self.decide(principal, action, resource, context, snap.handle, resource_slug=resource_slug,
                           inputs=inputs)

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
        """May `principal` call `http_method` on this install? (`read` for GET/HEAD, else `write`).

        `now`: the clock (default: the current time); the context carries it to the minute."""
        if len(path) > MEMO_MAX_PATH:
            return self._decide_invoke(principal, install, http_method, endpoint, path, now)
        # The context's time is truncated to the minute, so the minute completes the key. Path
        # and time are left out of the key when no policy of this bundle reads them: they
        # cannot change the decision (the context's shape is always the same).
        minute = epoch_minute(now)
        key = (principal_key(principal), install, http_method.upper(), endpoint.declared,
               endpoint.template if endpoint.declared else None,
               path if self._memo_path else None, minute if self._memo_time else None)
        decision = self._invoke_memo.get_or_build(
            key, lambda: self._decide_invoke(principal, install, http_method, endpoint, path,
                                             datetime.fromtimestamp(minute * 60, UTC)))
        inputs = decision.inputs
        if inputs is not None and not (self._memo_path and self._memo_time):
            context = inputs.context
            record = context.get("time") if self._memo_time else time_record(minute)
            if context.get("path") != path or context.get("time") is not record:
                # The same decision, recorded with this request's own path and time; kept, so
                # the next calls of this minute to this path find it as it is.
                decision = replace(decision, inputs=replace(inputs, context={**context, "path": path, "time": record}))
                self._invoke_memo.refresh(key, decision)
        return decision

    def _decide_invoke(
        self, principal: Principal, install: InstallFacts, http_method: str, endpoint: EndpointMatch, path: str,
        now: datetime | None = None,
    ) -> Decision:
        return self._decide_for(
            (principal_key(principal), install),
            lambda: request_entities(principal, install=install),
            EntityRef(USER_TYPE, principal.subject),
            invoke_action(http_method),
            EntityRef(INSTALL_TYPE, install.install_id),
            invoke_context(http_method, endpoint, path, now=now),
            install.slug,
        )

    def decide_debug_view(
        self, principal: Principal, install: InstallFacts, counts: DebugCounts, justification: str | None = None,
        *, now: datetime | None = None,
    ) -> Decision:
        """May `principal` open a debug stream on this install now? (`now`: the clock, default the current time.)"""
        return self._decide_for(
            (principal_key(principal), install),
            lambda: request_entities(principal, install=install),
            EntityRef(USER_TYPE, principal.subject),
            DEBUG_VIEW,
            EntityRef(INSTALL_TYPE, install.install_id),
            debug_context(counts, justification, now=now),
            install.slug,
        )

    def decide_admin(self, principal: Principal, action: str, *, tenant_id: str | None) -> Decision:
        """Admin action on a tenant (or on the platform when `tenant_id` is None)."""
        resource = EntityRef(TENANT_TYPE, tenant_id) if tenant_id is not None else EntityRef(PLATFORM_TYPE, PLATFORM_ID)
        return self._decide_for(
            (principal_key(principal), "tenant", tenant_id),
            lambda: request_entities(principal, tenant=tenant_id),
            EntityRef(USER_TYPE, principal.subject),
            action,
            resource,
            "{}",
        )


class DenyAllEngine:
    """Used while no valid bundle has ever loaded: every decision is a deny."""

    revision = "none"

    def _deny(self, action: str) -> Decision:
        return Decision(False, action, (NO_BUNDLE_ID,), (NO_BUNDLE_REASON,), self.revision, ("no active bundle",))

    def decide_invoke(
        self, principal: Principal, install: InstallFacts, http_method: str, endpoint: EndpointMatch, *, path: str = "",
        now: datetime | None = None,
    ) -> Decision:
        return self._deny(invoke_action(http_method))

    def decide_debug_view(
        self, principal: Principal, install: InstallFacts, counts: DebugCounts, justification: str | None = None,
        *, now: datetime | None = None,
    ) -> Decision:
        return self._deny(DEBUG_VIEW)

    def decide_admin(self, principal: Principal, action: str, *, tenant_id: str | None) -> Decision:
        return self._deny(action)


def describe_entity_error(text: str, schema: cedarpy.Schema, exc: Exception) -> str:
    """cedarpy only says "entity does not conform"; find which entity, and why if we can."""
    try:
        items = json.loads(text)
    except ValueError:
        return f"entities are not valid JSON: {exc}"
    if not isinstance(items, list):
        return "entities must be a JSON list"
    for item in items:
        try:
            cedarpy.Entities.from_json_str(json.dumps([item]), schema)
        except ValueError as inner:
            uid = item.get("uid", {}) if isinstance(item, dict) else {}
            label = f'{uid.get("type")}::"{uid.get("id")}"'
            return f"entity {label} does not conform to the schema: {_why(item, schema) or inner}"
    return str(exc).splitlines()[0] if str(exc) else "entities do not conform to the schema"


def _why(item: dict[str, Any], schema: cedarpy.Schema) -> str | None:
    """Ask the authorizer with raw JSON + schema: its message names the attribute."""
    uid = item.get("uid") if isinstance(item, dict) else None
    if not isinstance(uid, dict):
        return None
    result = cedarpy.is_authorized(
        {"principal": uid, "action": {"type": ACTION_TYPE, "id": "__probe__"}, "resource": uid, "context": {}},
        "",
        json.dumps([item]),
        schema,
    )
    marker = "does not conform to the schema: "
    for err in result.diagnostics.errors:
        if marker in err:  # the text before the marker echoes the entity JSON: drop it
            return err.rsplit(marker, 1)[-1][:300]
    return None
