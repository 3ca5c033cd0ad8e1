"""Recorded decisions: explain one exactly as it was made, and replay many against a candidate.

Every decision record names what it was decided on (`details["decision"]`, written from
`model.DecisionInputs.record`): the request (principal, action, resource, context) and the
digest of the entity snapshot, whose bytes the audit log stores once per distinct snapshot
(`audit_blob`, same transaction as the record). With the record's `policy_revision`
(bundle files are never pruned, see `store.BundleStore`) that is everything Cedar
evaluated, so the decision can be evaluated again, exactly:

- `explain_recorded`: that revision, those facts, the determining policies with their
  `@reason`; checked against the recorded outcome and policy ids (a difference is reported,
  never papered over); plus what today's active revision would decide.
- `replay`: re-decide a window of recorded decisions with a candidate bundle and report
  the flips (allow -> deny, deny -> allow), grouped. Read-only.

Nothing here guesses: a record that is not a decision, a record from before snapshots
existed, a missing revision or snapshot, or a snapshot whose bytes do not hash to the
recorded digest is an error with a stable code.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import cedarpy

from audit.log import NotFoundError, RecordFilter
from audit.records import StoredRecord, blob_digest, is_blob_digest
from service.policy.bundle import compile_bundle
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.explain import Explanation, explain
from service.policy.model import EVALUATION_ERROR_ID, DecisionInputs, EntityRef
from service.policy.population import context_attributes_read
from service.policy.source import BundleError, short_revision
from service.policy.store import BundleStore, RevisionNotFound

GATEWAY_DECISION = "gateway.decision"
#: Records that carry a policy decision (admin denials are `admin.<action>` with outcome deny).
DECISION_ACTIONS = frozenset({GATEWAY_DECISION, "debug_session.start", "debug_session.deny"})
_ALLOWED_OUTCOMES = frozenset({"allow", "success"})


class RecordedDecisionError(LookupError):
    """Why a recorded decision cannot be explained; `code` is the API's error code."""

    status = 404
    code = "decision_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DecisionNotFound(RecordedDecisionError):
    code = "decision_not_found"


class NotADecision(RecordedDecisionError):
    code = "not_a_decision"


class SnapshotNotFound(RecordedDecisionError):
    code = "snapshot_not_found"


class RecordedRevisionNotFound(RecordedDecisionError):
    code = "revision_not_found"


class SnapshotMismatch(RecordedDecisionError):
    """The stored snapshot does not hash to the digest its record names (tampering)."""

    status = 409
    code = "snapshot_mismatch"


class RecordSource(Protocol):
    """The read side of the audit log this module needs (`audit.sql.SqlAuditLog`)."""

    def get(self, seq: int) -> StoredRecord: ...
    def query(self, flt: RecordFilter, *, after_seq: int | None = None, before_seq: int | None = None,
              limit: int = 100, descending: bool = False) -> list[StoredRecord]: ...
    def get_blob(self, digest: str) -> bytes: ...


def is_decision_record(rec: Mapping[str, Any]) -> bool:
    action = str(rec.get("action", ""))
    return action in DECISION_ACTIONS or (action.startswith("admin.") and rec.get("outcome") == "deny")


def recorded_allowed(rec: Mapping[str, Any]) -> bool:
    return rec.get("outcome") in _ALLOWED_OUTCOMES


def _decision_details(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    details = rec.get("details")
    found = details.get("decision") if isinstance(details, dict) else None
    return found if isinstance(found, dict) else None


# --- finding the record -------------------------------------------------------------------


def find_decision(log: RecordSource, *, request_id: str | None = None, seq: int | None = None) -> dict[str, Any]:
    """The decision record for a request id (a request may have several records: the
    decision, preferring one that names its inputs and then `gateway.decision`) or at a seq."""
    if (request_id is None) == (seq is None):
        raise ValueError("give exactly one of request_id and seq")
    if seq is not None:
        try:
            rec = log.get(seq).parsed()
        except NotFoundError:
            raise DecisionNotFound(f"no audit record {seq}") from None
        if not is_decision_record(rec):
            raise NotADecision(f"audit record {seq} is a {rec.get('action')!r} record, not a policy decision")
        return rec
    records = [r.parsed() for r in log.query(RecordFilter(request_id=request_id), limit=1000)]
    if not records:
        raise DecisionNotFound(f"no audit record for request {request_id!r}")
    decisions = [r for r in records if is_decision_record(r)]
    if not decisions:
        kinds = ", ".join(sorted({str(r.get("action")) for r in records}))
        raise NotADecision(f"request {request_id!r} has no decision record (only: {kinds})")
    decisions.sort(key=lambda r: (_decision_details(r) is None, r.get("action") != GATEWAY_DECISION, r["seq"]))
    return decisions[0]


# --- the inputs ---------------------------------------------------------------------------


def _ref(value: Any, what: str) -> EntityRef:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str) or not isinstance(value.get("id"), str):
        raise SnapshotNotFound(f"the record's {what} is not an entity reference")
    return EntityRef(value["type"], value["id"])


def _verified_blob(get_blob: Callable[[str], bytes], digest: Any, what: str) -> bytes:
    if not is_blob_digest(digest):
        raise SnapshotNotFound(f"the record names no valid {what} digest")
    try:
        body = get_blob(digest)
    except NotFoundError:
        raise SnapshotNotFound(f"the {what} {digest} is not in the audit log") from None
    except Exception as exc:  # e.g. the audit_blob table does not exist yet
        raise SnapshotNotFound(f"the {what} {digest} cannot be read ({type(exc).__name__}); "
                               "is the database migrated (`extgate db upgrade`)?") from None
    if blob_digest(body) != digest:
        raise SnapshotMismatch(f"the stored {what} does not hash to {digest}: the audit log was altered")
    return body


def load_inputs(log: RecordSource, rec: Mapping[str, Any]) -> DecisionInputs:
    """The request and the verified entity snapshot the record's decision was made on."""
    dec = _decision_details(rec)
    if dec is None:
        raw_details = rec.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        if rec.get("policy_revision") in (None, "none") or "error" in details:
            raise SnapshotNotFound(
                f"record {rec.get('seq')} was not decided by a policy bundle "
                f"({details.get('error') or 'no policy revision'}): there is nothing to explain")
        raise SnapshotNotFound(
            f"record {rec.get('seq')} was written before decision records named their entity snapshot: "
            "the exact explanation is unavailable")
    entities = _verified_blob(log.get_blob, dec.get("entities"), "entity snapshot")
    if "context" in dec and isinstance(dec["context"], dict):
        context = dec["context"]
    else:
        raw = _verified_blob(log.get_blob, dec.get("context_digest"), "request context")
        context = json.loads(raw)
    return DecisionInputs(_ref(dec.get("principal"), "principal"), str(dec.get("action", "")),
                          _ref(dec.get("resource"), "resource"), context, str(dec["entities"]), entities)


# --- engines by revision ------------------------------------------------------------------

_ENGINES: dict[str, PolicyEngine] = {}
_ENGINES_LOCK = threading.Lock()
_ENGINES_MAX = 16


def engine_for_revision(store: BundleStore, revision: str | None, current: PolicyEngine | None = None) -> PolicyEngine:
    """A compiled engine for a recorded revision (revisions are content hashes: safe to
    cache by revision alone). Raises RecordedRevisionNotFound."""
    if not revision or revision == "none":
        raise RecordedRevisionNotFound("the record names no policy revision (no bundle was active)")
    if current is not None and current.revision == revision:
        return current
    found = _ENGINES.get(revision)
    if found is not None:
        return found
    try:
        source = store.load(revision)
    except (RevisionNotFound, OSError) as exc:
        raise RecordedRevisionNotFound(f"policy revision {revision} is not in the bundle store ({exc})") from None
    if source.revision != revision:
        raise RecordedRevisionNotFound(f"the stored bundle for {revision} has revision {source.revision}")
    try:
        engine = PolicyEngine(compile_bundle(source))
    except BundleError as exc:
        raise RecordedRevisionNotFound(f"policy revision {revision} no longer compiles: {exc}") from None
    with _ENGINES_LOCK:
        while len(_ENGINES) >= _ENGINES_MAX:
            _ENGINES.pop(next(iter(_ENGINES)))
        _ENGINES[revision] = engine
    return engine


# --- explaining one -----------------------------------------------------------------------


def _verdict(allowed: bool | None) -> str:
    return "ALLOW" if allowed else "DENY"


@dataclass
class RecordedExplanation:
    record: dict[str, Any]
    inputs: DecisionInputs
    explanation: Explanation | None  # None: the snapshot did not fit that revision's schema
    schema_error: str | None
    mismatch: str | None
    today: dict[str, Any]

    @property
    def allowed(self) -> bool:
        return recorded_allowed(self.record)

    def to_dict(self) -> dict[str, Any]:
        rec = self.record
        return {
            "seq": rec["seq"],
            "request_id": rec.get("request_id"),
            "record_action": rec.get("action"),
            "ts_us": rec.get("ts"),
            "tenant": rec.get("tenant"),
            "recorded": {
                "decision": "allow" if self.allowed else "deny",
                "policy_ids": list(rec.get("policy_ids") or []),
                "revision": rec.get("policy_revision"),
                "entities": self.inputs.entities_digest,
            },
            "explanation": self.explanation.to_dict() if self.explanation is not None else None,
            "schema_error": self.schema_error,
            "matches_record": self.mismatch is None,
            "mismatch": self.mismatch,
            "today": self.today,
        }

    def render(self) -> str:
        rec = self.record
        lines = [f"recorded decision: audit record {rec['seq']} ({rec.get('action')}), "
                 f"request {rec.get('request_id') or '-'}, entities {self.inputs.entities_digest[:19]}"]
        if self.mismatch is not None:
            lines.append(f"WARNING: {self.mismatch}")
        if self.explanation is not None:
            lines.append(self.explanation.render())
        else:
            lines.append(f"DENY  {self.inputs.principal} {self.inputs.action} {self.inputs.resource}")
            lines.append(f"revision {rec.get('policy_revision')}")
            lines.append(f"  error: {self.schema_error}")
        lines.append(today_line(self.today))
        return "\n".join(lines)


def today_line(today: Mapping[str, Any]) -> str:
    if today.get("decision") is None:
        return f"today: {today.get('error')}"
    ids = ", ".join(today.get("policy_ids") or []) or "no policy (default deny)"
    return (f"today it would be {today['decision'].upper()} (revision {short_revision(str(today.get('revision')))}:"
            f" {ids})")


def decide_today(current: PolicyEngine | None, inputs: DecisionInputs) -> dict[str, Any]:
    """What today's active revision decides on the recorded facts (or why it cannot)."""
    if current is None:
        return {"decision": None, "revision": None, "error": "no policy revision is active today"}
    try:
        entities = current.entities(inputs.entities.decode("utf-8"))
    except EntitiesError as exc:
        return {"decision": None, "revision": current.revision,
                "error": f"the recorded facts do not fit today's schema (revision "
                         f"{short_revision(current.revision)}): {exc}"}
    d = current.decide(inputs.principal, inputs.action, inputs.resource, inputs.context, entities, sliced=False)
    return {"decision": "allow" if d.allowed else "deny", "revision": current.revision,
            "policy_ids": list(d.policy_ids), "reasons": list(d.reasons), "errors": list(d.errors)}


def explain_recorded(
    log: RecordSource, store: BundleStore, rec: dict[str, Any], *, current: PolicyEngine | None
) -> RecordedExplanation:
    """Explain record `rec` as it was decided: its revision, its verified snapshot."""
    inputs = load_inputs(log, rec)
    engine = engine_for_revision(store, rec.get("policy_revision"), current)
    recorded_ids = tuple(rec.get("policy_ids") or ())
    allowed = recorded_allowed(rec)
    try:
        entities = engine.entities(inputs.entities.decode("utf-8"))
    except EntitiesError as exc:
        mismatch = None
        if allowed or recorded_ids != (EVALUATION_ERROR_ID,):
            mismatch = (f"the recorded snapshot does not fit revision {short_revision(engine.revision)}'s schema "
                        f"({exc}), but the record says {_verdict(allowed)} {list(recorded_ids)}")
        return RecordedExplanation(rec, inputs, None, str(exc), mismatch, decide_today(current, inputs))
    explanation = explain(engine, inputs.principal, inputs.action, inputs.resource, inputs.context, entities)
    d = explanation.decision
    mismatch = None
    if d.allowed != allowed or tuple(d.policy_ids) != recorded_ids:
        mismatch = (f"re-evaluating the recorded request and snapshot with revision "
                    f"{short_revision(engine.revision)} gives {_verdict(d.allowed)} {list(d.policy_ids)}, "
                    f"but the record says {_verdict(allowed)} {list(recorded_ids)}")
    return RecordedExplanation(rec, inputs, explanation, None, mismatch, decide_today(current, inputs))


# --- replay -------------------------------------------------------------------------------


def _endpoint(rec: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    resource = str(rec.get("resource") or "")
    _, sep, endpoint = resource.partition("/endpoint:")
    if sep:
        return endpoint
    if resource.endswith("/debug"):
        return "debug"
    return "-"


@dataclass
class FlipGroup:
    direction: str  # "allow_to_deny" | "deny_to_allow"
    policy_ids: tuple[str, ...]  # the candidate's determining policies
    tenant: str | None
    action: str
    endpoint: str
    count: int = 0
    samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "policy_ids": list(self.policy_ids), "tenant": self.tenant,
                "action": self.action, "endpoint": self.endpoint, "count": self.count, "samples": self.samples}


@dataclass
class ReplayReport:
    candidate_revision: str
    read: int = 0
    replayed: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: {
        "no_snapshot": 0, "snapshot_unreadable": 0, "schema_mismatch": 0})
    schema_problems: list[str] = field(default_factory=list)  # a few examples
    groups: dict[tuple[Any, ...], FlipGroup] = field(default_factory=dict)

    @property
    def flips(self) -> int:
        return sum(g.count for g in self.groups.values())

    def to_dict(self) -> dict[str, Any]:
        groups = sorted(self.groups.values(), key=lambda g: (-g.count, g.direction, g.policy_ids, str(g.tenant)))
        by_dir = {"allow_to_deny": 0, "deny_to_allow": 0}
        for g in groups:
            by_dir[g.direction] += g.count
        return {
            "candidate_revision": self.candidate_revision,
            "read": self.read,
            "replayed": self.replayed,
            "skipped": dict(self.skipped),
            "schema_problems": self.schema_problems,
            "flips": {"total": self.flips, **by_dir},
            "groups": [g.to_dict() for g in groups],
        }

    def render(self) -> str:
        data = self.to_dict()
        sk = data["skipped"]
        lines = [
            f"candidate {short_revision(self.candidate_revision)}: {self.read} decisions read, "
            f"{self.replayed} replayed, {sum(sk.values())} skipped "
            f"(no snapshot {sk['no_snapshot']}, snapshot unreadable {sk['snapshot_unreadable']}, "
            f"does not fit the candidate's schema {sk['schema_mismatch']})",
        ]
        for problem in self.schema_problems:
            lines.append(f"  schema: {problem}")
        flips = data["flips"]
        if not flips["total"]:
            lines.append("no flips: the candidate decides every replayed request as recorded")
        else:
            lines.append(f"{flips['total']} flips: {flips['allow_to_deny']} allow->deny, "
                         f"{flips['deny_to_allow']} deny->allow")
        for g in data["groups"]:
            arrow = "allow->deny" if g["direction"] == "allow_to_deny" else "deny->allow"
            ids = ",".join(g["policy_ids"]) or "(default deny)"
            lines.append(f"  {g['count']:>6}  {arrow}  {ids}  tenant={g['tenant']} action={g['action']} "
                         f"endpoint={g['endpoint']}  e.g. {' '.join(g['samples'])}")
        return "\n".join(lines)


class _Blobs:
    """Entity snapshots by digest for one replay: fetched in batches, parsed once."""

    def __init__(self, log: Any, engine: PolicyEngine) -> None:
        self.log = log
        self.engine = engine
        self.handles: dict[str, cedarpy.Entities | str] = {}  # handle, or why it is unusable
        self.reasons: dict[str, str] = {}

    def prefetch(self, digests: Iterable[str]) -> None:
        want = [d for d in set(digests) if d not in self.handles]
        if not want:
            return
        get_many = getattr(self.log, "get_blobs", None)
        found: dict[str, bytes] = get_many(want) if get_many is not None else {}
        for digest in want:
            body = found.get(digest)
            if body is None and get_many is None:
                try:
                    body = self.log.get_blob(digest)
                except Exception:  # noqa: BLE001 - counted as unreadable
                    body = None
            if body is None or blob_digest(body) != digest:
                self.handles[digest] = "snapshot_unreadable"
                continue
            try:
                self.handles[digest] = self.engine.entities(body.decode("utf-8"))
            except (EntitiesError, UnicodeDecodeError) as exc:
                self.handles[digest] = "schema_mismatch"
                self.reasons[digest] = str(exc)


_ACTION_PREFIX = b'{"action":"'


def _maybe_decision(body: bytes) -> bool:
    """Canonical JSON sorts keys, so a record's bytes begin with its action: records that are
    surely not decisions are skipped without being parsed (the rest are checked parsed)."""
    if not body.startswith(_ACTION_PREFIX):
        return True
    end = body.find(b'"', len(_ACTION_PREFIX))
    action = body[len(_ACTION_PREFIX):end].decode("utf-8", "replace")
    return action in DECISION_ACTIONS or action.startswith("admin.")


_CANONICAL_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _shape(value: Any) -> Any:
    """What Cedar's schema check of a context value depends on: its type and structure (an
    extension value's text only when it is not a well-formed instant)."""
    if isinstance(value, dict):
        extn = value.get("__extn")
        if isinstance(extn, dict) and extn.get("fn") == "datetime" and isinstance(extn.get("arg"), str):
            arg = extn["arg"]
            if _CANONICAL_INSTANT.match(arg):
                try:
                    datetime.fromisoformat(arg)
                    return "<datetime>"
                except ValueError:
                    pass
            return value
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return f"<{type(value).__name__}>"


def context_key(engine: PolicyEngine) -> Callable[[Mapping[str, Any]], str]:
    """The part of a context that can change `engine`'s decisions, as a memo key.

    Cedar reads context attributes only through `context.<attr>` (or `context has <attr>`),
    so two contexts that agree on every attribute some policy of the bundle names, and have
    the same shape elsewhere (what the schema check sees), get the same decision. Replayed
    traffic then costs one evaluation per distinct (snapshot, request, relevant context),
    not per record; when a policy uses `context` as a whole, the whole context is the key."""
    named = context_attributes_read(info.est for info in engine.bundle.policies.values())
    if named is None:
        return lambda ctx: json.dumps(ctx, sort_keys=True)

    def key(ctx: Mapping[str, Any]) -> str:
        return json.dumps({k: (v if k in named else _shape(v)) for k, v in ctx.items()}, sort_keys=True)

    return key


def replay(
    log: Any,
    candidate: PolicyEngine,
    flt: RecordFilter,
    *,
    limit: int | None = None,
    samples: int = 3,
    chunk: int = 5_000,
) -> ReplayReport:
    """Re-decide the recorded decisions matching `flt` with `candidate`; read-only."""
    report = ReplayReport(candidate.revision)
    blobs = _Blobs(log, candidate)
    relevant = context_key(candidate)
    memo: dict[tuple[Any, ...], tuple[bool, tuple[str, ...]]] = {}
    after: int | None = None
    done = False
    while not done:
        page = log.query(flt, after_seq=after, limit=chunk)
        if len(page) < chunk:
            done = True
        if page:
            after = page[-1].seq
        todo: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for stored in page:
            if not _maybe_decision(stored.body):  # most non-decisions, without parsing them
                continue
            rec = json.loads(stored.body)
            if not is_decision_record(rec):
                continue
            if limit is not None and report.read >= limit:
                done = True
                break
            report.read += 1
            dec = _decision_details(rec)
            if dec is None or not is_blob_digest(dec.get("entities")):
                report.skipped["no_snapshot"] += 1
                continue
            if not isinstance(dec.get("context"), dict):  # a long context is a blob of its own
                try:
                    dec["context"] = json.loads(_verified_blob(log.get_blob, dec.get("context_digest"), "context"))
                except (RecordedDecisionError, ValueError):
                    report.skipped["snapshot_unreadable"] += 1
                    continue
            todo.append((rec, dec))
        blobs.prefetch(dec["entities"] for _rec, dec in todo)
        for rec, dec in todo:
            handle = blobs.handles[dec["entities"]]
            if isinstance(handle, str):
                report.skipped[handle] += 1
                reason = blobs.reasons.pop(dec["entities"], None)
                if reason and len(report.schema_problems) < 5:
                    report.schema_problems.append(reason)
                continue
            context = dec["context"]
            p, r = dec.get("principal") or {}, dec.get("resource") or {}
            key = (dec["entities"], dec.get("action"), p.get("type"), p.get("id"), r.get("type"), r.get("id"),
                   relevant(context))
            found = memo.get(key)
            if found is None:
                d = candidate.decide(EntityRef(str(p.get("type")), str(p.get("id"))), str(dec.get("action")),
                                     EntityRef(str(r.get("type")), str(r.get("id"))), json.dumps(context), handle)
                found = memo[key] = (d.allowed, d.policy_ids)
            report.replayed += 1
            was = recorded_allowed(rec)
            now, ids = found
            if now == was:
                continue
            direction = "allow_to_deny" if was else "deny_to_allow"
            gkey = (direction, ids, rec.get("tenant"), dec.get("action"), _endpoint(rec, context))
            group = report.groups.get(gkey)
            if group is None:
                group = report.groups[gkey] = FlipGroup(direction, ids, rec.get("tenant"), str(dec.get("action")),
                                                        gkey[4])
            group.count += 1
            if len(group.samples) < samples:
                group.samples.append(str(rec.get("request_id") or f"seq:{rec['seq']}"))
    return report
