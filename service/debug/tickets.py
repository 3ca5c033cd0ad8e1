"""One-time tickets and session leases: in memory (one process) or in Redis (replicas).

A ticket is what `GET /api/ext-debug/stream` accepts: EventSource cannot send headers and
a long-lived bearer token must not end up in URLs and proxy logs. Only its SHA-256 is
stored; redeeming deletes it (GETDEL), so it works once, on any replica.

A lease is one open (or ticketed) session, counted per tenant and per stream for the
policy's caps. Leases expire unless renewed, so a crashed replica's sessions vanish.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SessionGrant:
    """What an authorized session may watch; carried by the ticket."""

    session_id: str
    tenant_id: str
    extension_id: str
    install_id: str
    stream_key: str
    subject: str
    principal_tenant: str
    roles: tuple[str, ...]
    user_type: str
    justification: str
    request_id_filter: str | None
    min_level: str | None
    policy_ids: tuple[str, ...]
    policy_revision: str
    max_duration_s: float
    # What the policy decided on (`details["decision"]` of the start record) and the
    # attachments it names (digest -> canonical JSON text); absent in older tickets.
    decision: dict[str, Any] | None = None
    attachments: dict[str, str] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionGrant:
        doc: dict[str, Any] = json.loads(text)
        doc["roles"] = tuple(doc["roles"])
        doc["policy_ids"] = tuple(doc["policy_ids"])
        return cls(**doc)


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


class SessionStore(Protocol):
    def counts(self, tenant_key: str, stream_key: str) -> tuple[int, int]: ...

    def reserve(self, grant: SessionGrant, ticket: str, ttl_s: float, tenant_key: str,
                tenant_limit: int, stream_limit: int) -> bool:
        """Store the ticket and a lease; False (nothing stored) if a cap would be exceeded."""
        ...

    def redeem(self, ticket: str) -> SessionGrant | None: ...

    def renew(self, grant: SessionGrant, tenant_key: str, ttl_s: float) -> None: ...

    def release(self, grant: SessionGrant, tenant_key: str) -> None: ...

    def close(self) -> None: ...


def _viewers_key(stream_key: str) -> str:
    return f"{stream_key}:viewers"


class MemorySessionStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, tuple[float, str]] = {}
        self._leases: dict[str, dict[str, float]] = {}

    def _live(self, key: str, now: float) -> dict[str, float]:
        leases = self._leases.setdefault(key, {})
        for sid in [s for s, exp in leases.items() if exp <= now]:
            del leases[sid]
        return leases

    def counts(self, tenant_key: str, stream_key: str) -> tuple[int, int]:
        now = time.time()
        with self._lock:
            return len(self._live(tenant_key, now)), len(self._live(_viewers_key(stream_key), now))

    def reserve(self, grant: SessionGrant, ticket: str, ttl_s: float, tenant_key: str,
                tenant_limit: int, stream_limit: int) -> bool:
        now = time.time()
        with self._lock:
            tenant = self._live(tenant_key, now)
            stream = self._live(_viewers_key(grant.stream_key), now)
            if len(tenant) >= tenant_limit or len(stream) >= stream_limit:
                return False
            tenant[grant.session_id] = stream[grant.session_id] = now + ttl_s
            for h in [h for h, (exp, _) in self._tickets.items() if exp <= now]:
                del self._tickets[h]
            self._tickets[ticket_hash(ticket)] = (now + ttl_s, grant.to_json())
            return True

    def redeem(self, ticket: str) -> SessionGrant | None:
        with self._lock:
            hit = self._tickets.pop(ticket_hash(ticket), None)
        if hit is None or hit[0] <= time.time():
            return None
        return SessionGrant.from_json(hit[1])

    def renew(self, grant: SessionGrant, tenant_key: str, ttl_s: float) -> None:
        until = time.time() + ttl_s
        with self._lock:
            self._leases.setdefault(tenant_key, {})[grant.session_id] = until
            self._leases.setdefault(_viewers_key(grant.stream_key), {})[grant.session_id] = until

    def release(self, grant: SessionGrant, tenant_key: str) -> None:
        with self._lock:
            self._leases.get(tenant_key, {}).pop(grant.session_id, None)
            self._leases.get(_viewers_key(grant.stream_key), {}).pop(grant.session_id, None)

    def close(self) -> None:
        return None


class RedisSessionStore:
    """Leases are sorted sets scored by expiry; tenant and stream sets share the `{tenant}`
    hash tag, so each MULTI stays on one Redis Cluster slot."""

    def __init__(self, url: str, *, prefix: str, connect_timeout_s: float, socket_timeout_s: float) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._r = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s,
                                       socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 1))
        self._prefix = prefix

    def _ticket_key(self, ticket: str) -> str:
        return f"{self._prefix}:ticket:{ticket_hash(ticket)}"

    def counts(self, tenant_key: str, stream_key: str) -> tuple[int, int]:
        now = time.time()
        pipe = self._r.pipeline(transaction=True)
        for key in (tenant_key, _viewers_key(stream_key)):
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcard(key)
        res = pipe.execute()
        return int(res[1]), int(res[3])

    def reserve(self, grant: SessionGrant, ticket: str, ttl_s: float, tenant_key: str,
                tenant_limit: int, stream_limit: int) -> bool:
        now = time.time()
        vkey = _viewers_key(grant.stream_key)
        # Add first, then count: two concurrent requests cannot both slip under the cap.
        pipe = self._r.pipeline(transaction=True)
        for key in (tenant_key, vkey):
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {grant.session_id: now + ttl_s})
            pipe.zcard(key)
            pipe.expire(key, int(ttl_s) + 3600)
        res = pipe.execute()
        if int(res[2]) > tenant_limit or int(res[6]) > stream_limit:
            self.release(grant, tenant_key)
            return False
        self._r.set(self._ticket_key(ticket), grant.to_json(), px=int(ttl_s * 1000))
        return True

    def redeem(self, ticket: str) -> SessionGrant | None:
        raw = self._r.getdel(self._ticket_key(ticket))
        return SessionGrant.from_json(raw) if raw else None

    def renew(self, grant: SessionGrant, tenant_key: str, ttl_s: float) -> None:
        until = time.time() + ttl_s
        pipe = self._r.pipeline(transaction=True)
        for key in (tenant_key, _viewers_key(grant.stream_key)):
            pipe.zadd(key, {grant.session_id: until})
            pipe.expire(key, int(ttl_s) + 3600)
        pipe.execute()

    def release(self, grant: SessionGrant, tenant_key: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.zrem(tenant_key, grant.session_id)
        pipe.zrem(_viewers_key(grant.stream_key), grant.session_id)
        pipe.execute()

    def close(self) -> None:
        self._r.close()
