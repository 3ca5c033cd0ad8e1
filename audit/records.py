"""What an audit record contains, and how it becomes the canonical bytes that are hashed.

A caller builds an `AuditEvent` (plain data; `audit` imports nothing from `service`). The
log assigns the sequence number and encodes the stored body:

    {"action":..,"actor":{..}|null,"details":{..},"outcome":..,"policy_ids":[..],
     "policy_revision":..|null,"request_id":..|null,"resource":..|null,"seq":N,
     "tenant":..|null,"ts":<UTC microseconds>,"v":1}

`seq` is inside the hashed bytes, so moving a row to another position is detectable even
when its leaf hash is recomputed.

Records never carry secret values, tokens or request/response bodies. `sanitize_details`
enforces that defensively: detail keys that name a secret-bearing thing (`password`,
`token`, `authorization`, `api_key`, `body`, ...) are dropped and listed in
`details["_redacted"]`, and string values that look like credentials (JWTs, `Bearer ...`,
PEM blocks) are replaced by `"[redacted]"`. Record key *names* with keys such as
`secret_names` or `keys`, which are allowed.

Attachments: an event may carry content-addressed blobs (`attachments`: digest ->
bytes, digest = `blob_digest(bytes)` = "sha256:<hex>"). They are not part of the hashed
record bytes; the record names them by digest in its details (hashed), and the log stores
each distinct blob once, in the same transaction as the record (see `audit.sql`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from audit.canonical import MAX_SAFE_INTEGER

RECORD_VERSION = 1
MAX_FIELD_CHARS = 512
MAX_DETAIL_STRING_CHARS = 2048
MAX_DETAIL_KEYS = 64
MAX_BODY_BYTES = 16 * 1024
REDACTED = "[redacted]"

_KEY_RE = re.compile(r"^[A-Za-z0-9_.:@/-]{1,64}$")
# Normalized (lowercase, separators removed) key suffixes that name secret material.
_SECRET_KEY_SUFFIXES = (
    "secret",
    "token",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "cookie",
    "setcookie",
    "apikey",
    "privatekey",
    "accesskey",
    "secretkey",
    "signingkey",
    "sessionkey",
    "credential",
    "credentials",
    "bearer",
    "body",
    "payload",
    "ciphertext",
    "plaintext",
    "envelope",
)
_SECRET_VALUE_RE = re.compile(
    r"^eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\."  # JWT / JWS compact
    r"|^(?i:bearer|basic|token)\s+\S{8,}"  # Authorization header value
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


class AuditRecordError(ValueError):
    """The event cannot be recorded (wrong types, floats, too large)."""


BLOB_DIGEST_PREFIX = "sha256:"
MAX_BLOB_BYTES = 1024 * 1024
_BLOB_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def blob_digest(body: bytes) -> str:
    """The content address of an attachment: "sha256:<64 hex>"."""
    return BLOB_DIGEST_PREFIX + hashlib.sha256(body).hexdigest()


def is_blob_digest(value: object) -> bool:
    return isinstance(value, str) and _BLOB_DIGEST_RE.match(value) is not None


_SECRET_KEY_RE = re.compile("(?:" + "|".join(_SECRET_KEY_SUFFIXES) + ")s?$")
_NON_ALNUM_RE = re.compile(r"[^a-z0-9]")


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True if a details key names secret-bearing content (`client_secret`, `auth-token`, `body`)."""
    return _SECRET_KEY_RE.search(_NON_ALNUM_RE.sub("", key.lower())) is not None


def looks_like_secret_value(value: str) -> bool:
    return _SECRET_VALUE_RE.search(value) is not None


def _sanitize(value: Any, path: str, redacted: list[str], depth: int) -> Any:
    kind = type(value)
    if kind is str:
        if looks_like_secret_value(value):
            redacted.append(path.lstrip(".") or "$")
            return REDACTED
        if len(value) > MAX_DETAIL_STRING_CHARS:
            return value[:MAX_DETAIL_STRING_CHARS] + "...[truncated]"
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise AuditRecordError(f"details{path}: integer outside the interoperable range")
    if value is None or kind is bool:
        return value
    if depth > 6:
        raise AuditRecordError(f"details{path}: nested too deeply")
    if kind is dict or isinstance(value, Mapping):
        if len(value) > MAX_DETAIL_KEYS:
            raise AuditRecordError(f"details{path}: more than {MAX_DETAIL_KEYS} keys")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str or not _KEY_RE.match(key):
                raise AuditRecordError(f"details{path}: invalid key {key!r}")
            if key == "_redacted":
                continue
            if is_secret_key(key):
                redacted.append(f"{path}.{key}".lstrip("."))
                continue
            out[key] = _sanitize(item, f"{path}.{key}", redacted, depth + 1)
        return out
    if kind is list or kind is tuple:
        return [_sanitize(item, f"{path}[{i}]", redacted, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, bool | int | str):  # subclasses (IntEnum, StrEnum): plain values
        return _sanitize(kind.__mro__[-2](value), path, redacted, depth)
    if isinstance(value, float):
        raise AuditRecordError(f"details{path}: floats are not allowed (use integer ms/us)")
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_sanitize(item, f"{path}[{i}]", redacted, depth + 1) for i, item in enumerate(value)]
    raise AuditRecordError(f"details{path}: unsupported type {type(value).__name__}")


def sanitize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy `details`, dropping secret-bearing keys and credential-looking values."""
    if not details:
        return {}
    redacted: list[str] = []
    clean = _sanitize(details, "", redacted, 0)
    if redacted:
        clean["_redacted"] = sorted(set(redacted))
    return clean


class PrincipalLike(Protocol):
    """Duck type of `service.auth.principal.Principal` (audit must not import service)."""

    @property
    def subject(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def roles(self) -> frozenset[str]: ...
    @property
    def user_type(self) -> str: ...


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, a service account, an operator, or the system itself."""

    id: str
    type: str = "user"
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    auth: str | None = None  # authentication method, e.g. "jwt-eddsa", "api-key" (never the credential)
    ip: str | None = None

    @classmethod
    def from_principal(cls, principal: PrincipalLike, *, auth: str | None = None, ip: str | None = None) -> Actor:
        return cls(
            id=principal.subject,
            type=principal.user_type,
            tenant=principal.tenant,
            roles=tuple(sorted(principal.roles)),
            auth=auth,
            ip=ip,
        )

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(id=f"system:{component}", type="system")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.tenant is not None:
            out["tenant"] = self.tenant
        if self.roles:
            out["roles"] = sorted(self.roles)
        if self.auth is not None:
            out["auth"] = self.auth
        if self.ip is not None:
            out["ip"] = self.ip
        return out


def now_us() -> int:
    return time.time_ns() // 1000


_AGE_RE = re.compile(r"^(\d+)([smhdw])$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_us(value: str, *, now: int | None = None) -> int:
    """ISO 8601 date/datetime (UTC when no zone is given) or an age like `30m`, `24h`, `7d`.

    Returns UTC microseconds. Raises `ValueError` for anything else.
    """
    text = value.strip()
    match = _AGE_RE.match(text)
    if match:
        base = now_us() if now is None else now
        return base - int(match.group(1)) * _AGE_UNITS[match.group(2)] * 1_000_000
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened. `seq` is assigned by the log at append time."""

    action: str  # dotted name, see audit.actions
    outcome: str  # allow | deny | success | error | ...
    tenant_id: str | None = None  # None: platform-wide event
    actor: Actor | None = None
    resource: str | None = None  # e.g. "install:<id>/endpoint:GET /x", "extension:acme.tool@1.2.0"
    policy_ids: tuple[str, ...] = ()  # determining policies
    policy_revision: str | None = None
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    ts: int = field(default_factory=now_us)  # event time, UTC microseconds
    # Content-addressed blobs the record refers to by digest (not part of the hashed bytes).
    attachments: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def to_body(self, seq: int) -> dict[str, Any]:
        """The JSON object stored for this event at position `seq` (details sanitized)."""
        for name in ("action", "outcome"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > MAX_FIELD_CHARS:
                raise AuditRecordError(f"{name} must be a non-empty string of at most {MAX_FIELD_CHARS}")
        for name in ("tenant_id", "resource", "policy_revision", "request_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD_CHARS):
                raise AuditRecordError(f"{name} must be a string of at most {MAX_FIELD_CHARS} or None")
        if isinstance(self.policy_ids, str) or not all(isinstance(p, str) for p in self.policy_ids):
            raise AuditRecordError("policy_ids must be a sequence of strings")
        if not isinstance(self.ts, int) or isinstance(self.ts, bool) or not 0 <= self.ts <= MAX_SAFE_INTEGER:
            raise AuditRecordError("ts must be integer microseconds")
        actor = self.actor.to_json() if self.actor is not None else None
        if actor is not None:
            roles = actor.get("roles", [])
            if not all(
                isinstance(v, str) and len(v) <= MAX_FIELD_CHARS for k, v in actor.items() if k != "roles"
            ) or not all(isinstance(r, str) for r in roles):
                raise AuditRecordError("actor fields must be strings")
        return {
            "v": RECORD_VERSION,
            "seq": seq,
            "ts": self.ts,
            "tenant": self.tenant_id,
            "actor": actor,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome,
            "policy_ids": list(self.policy_ids),
            "policy_revision": self.policy_revision,
            "request_id": self.request_id,
            "details": sanitize_details(self.details),
        }

    def encode(self, seq: int) -> bytes:
        """Canonical bytes of this event at `seq`: what is stored and hashed."""
        return self.prepare().at(seq)

    def prepare(self) -> PreparedRecord:
        """Validate, sanitize and pre-encode everything except `seq`.

        Canonical JSON sorts keys, and `seq` sorts between `resource` and `tenant`, so the
        record's bytes are `prefix + str(seq) + suffix` exactly. The writer only splices in
        the seq and hashes while it holds the log's head lock.
        """
        body = self.to_body(0)
        try:
            text = _dumps(body)
        except (TypeError, ValueError) as exc:
            raise AuditRecordError(str(exc)) from exc
        # Keys sort as ... resource < seq < tenant < ts < v, and nothing after the top-level
        # seq can contain an unescaped quote sequence, so the last match is the top-level one.
        cut = text.rfind(_SEQ_MARK)
        if cut < 0:  # pragma: no cover - body always has seq and tenant
            raise AuditRecordError("cannot place seq")
        try:
            prefix = text[: cut + _SEQ_PREFIX_LEN].encode("utf-8")
            suffix = text[cut + _SEQ_PREFIX_LEN + 1 :].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise AuditRecordError(str(exc)) from exc
        if len(prefix) + len(suffix) + 16 > MAX_BODY_BYTES:
            raise AuditRecordError(f"record is more than {MAX_BODY_BYTES} bytes")
        actor = body["actor"]
        attachments: tuple[tuple[str, bytes], ...] = ()
        if self.attachments:
            attachments = tuple(self.attachments.items())
            for digest, blob in attachments:
                if not isinstance(blob, bytes) or len(blob) > MAX_BLOB_BYTES:
                    raise AuditRecordError(f"attachment {digest!r} must be at most {MAX_BLOB_BYTES} bytes")
                if not is_blob_digest(digest) or blob_digest(blob) != digest:
                    raise AuditRecordError(f"attachment {digest!r} is not the sha256 digest of its bytes")
        return PreparedRecord(
            prefix=prefix,
            suffix=suffix,
            ts=body["ts"],
            tenant_id=body["tenant"],
            action=body["action"],
            outcome=body["outcome"],
            actor_id=actor["id"] if actor else None,
            resource=body["resource"],
            request_id=body["request_id"],
            attachments=attachments,
        )


_SEQ_MARK = ',"seq":0,"tenant":'
_SEQ_PREFIX_LEN = len(',"seq":')
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A validated event, encoded except for its seq, plus the filter columns."""

    prefix: bytes
    suffix: bytes
    ts: int
    tenant_id: str | None
    action: str
    outcome: str
    actor_id: str | None
    resource: str | None
    request_id: str | None
    attachments: tuple[tuple[str, bytes], ...] = ()  # (digest, bytes), verified

    def at(self, seq: int) -> bytes:
        return self.prefix + str(seq).encode() + self.suffix


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back from the log: its position, the exact stored bytes, its leaf hash."""

    seq: int
    body: bytes
    leaf_hash: bytes

    def parsed(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result
