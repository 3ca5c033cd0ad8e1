"""Inputs and outputs of policy decisions: small, immutable and typed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.canonical import canonical_json
from audit.records import blob_digest

NAMESPACE = "ExtGate"
USER_TYPE = f"{NAMESPACE}::User"
ROLE_TYPE = f"{NAMESPACE}::Role"
TENANT_TYPE = f"{NAMESPACE}::Tenant"
INSTALL_TYPE = f"{NAMESPACE}::Install"
PLATFORM_TYPE = f"{NAMESPACE}::Platform"
ACTION_TYPE = f"{NAMESPACE}::Action"
PLATFORM_ID = "extgate"

READ = "read"
WRITE = "write"
DEBUG_VIEW = "debug.view"
SAFE_METHODS = frozenset({"GET", "HEAD"})

#: Denials whose determining policies all carry this id prefix answer 404 endpoint_not_found.
ENDPOINT_POLICY_PREFIX = "endpoint."
#: The shipped endpoint rule (policies/endpoints.cedar).
ENDPOINT_RULE_ID = "endpoint.undeclared"
#: Pseudo policy id reported when no valid bundle is loaded (everything is denied).
NO_BUNDLE_ID = "engine.no-active-bundle"
#: Pseudo policy id reported when evaluation failed (the request is denied).
EVALUATION_ERROR_ID = "engine.evaluation-error"


@dataclass(frozen=True, slots=True)
class InstallFacts:
    """What the registry knows about the install a request targets."""

    tenant: str
    install_id: str
    extension_id: str
    slug: str
    capabilities: frozenset[str] = frozenset()
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class EndpointMatch:
    """The route matcher's result: was method+path declared, and which template matched."""

    declared: bool
    template: str | None = None


@dataclass(frozen=True, slots=True)
class DebugCounts:
    """Debug sessions open now, and the caps the service enforces."""

    tenant_sessions: int
    tenant_limit: int
    stream_sessions: int
    stream_limit: int


@dataclass(frozen=True, slots=True)
class EntityRef:
    type: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id}

    def __str__(self) -> str:
        escaped = self.id.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.type}::"{escaped}"'


#: Context strings longer than this make the recorded context a blob (audit details cap strings).
RECORD_MAX_CONTEXT_STRING = 1024


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """What a decision was made on: the request and the entity snapshot.

    `entities` are the canonical JSON bytes of the entities the engine evaluated (exactly
    what it parsed), `entities_digest` their "sha256:<hex>". Together with the bundle
    revision they determine the decision (Cedar evaluation is a pure function), so a
    recorded decision can be explained exactly, later, as it was made.
    """

    principal: EntityRef
    action: str
    resource: EntityRef
    context: dict[str, Any]
    entities_digest: str
    entities: bytes = field(repr=False)

    def record(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """(`details["decision"]` of the audit record, attachments by digest).

        The context is inline unless one of its strings is too long for audit details
        (strings there are capped): then it is a blob too, named by `context_digest`."""
        out: dict[str, Any] = {
            "principal": self.principal.to_json(),
            "action": self.action,
            "resource": self.resource.to_json(),
            "entities": self.entities_digest,
        }
        attachments = {self.entities_digest: self.entities}
        if any(isinstance(v, str) and len(v) > RECORD_MAX_CONTEXT_STRING for v in self.context.values()):
            data = canonical_json(self.context)
            digest = blob_digest(data)
            out["context_digest"] = digest
            attachments[digest] = data
        else:
            out["context"] = self.context
        return out, attachments


@dataclass(frozen=True, slots=True)
class Decision:
    """One authorization decision.

    `policy_ids` are the determining policies (permits on allow, forbids on deny; empty
    on a default deny), `reasons` their `@reason` texts in the same order, `revision` the
    active bundle's content hash, `inputs` the request and entity snapshot it was decided
    on. Any evaluation error makes the decision a deny.
    """

    allowed: bool
    action: str
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    revision: str
    errors: tuple[str, ...] = ()
    # What it was decided on (None when no engine evaluated it, e.g. no active bundle).
    inputs: DecisionInputs | None = field(default=None, compare=False, repr=False)

    @property
    def endpoint_not_found(self) -> bool:
        """Denied by endpoint rules only: the gateway answers 404 endpoint_not_found."""
        return (
            not self.allowed
            and not self.errors
            and bool(self.policy_ids)
            and all(pid.startswith(ENDPOINT_POLICY_PREFIX) for pid in self.policy_ids)
        )

    @property
    def default_deny(self) -> bool:
        return not self.allowed and not self.policy_ids and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "decision": "allow" if self.allowed else "deny",
            "action": self.action,
            "policy_ids": list(self.policy_ids),
            "reasons": list(self.reasons),
            "revision": self.revision,
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """One policy of a bundle, with where it came from."""

    id: str
    effect: str  # "permit" | "forbid"
    file: str
    line: int | None
    reason: str
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    est: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file
