"""Idempotency for non-GET calls carrying `x-idempotency-key`: one interface, two backends.

Keys are scoped by tenant + install + principal (upstream keyed by the client's string
alone, so two tenants choosing the same key saw each other's responses; and a key shared by
the users of one tenant would hand Bob Alice's stored response, or tell him her key is in
use): the same key sent by another user is an independent key. Each key is bound to a
fingerprint of the request (principal, method, path, query, body digest): the same key with
another request is refused rather than answered with an unrelated response. A first request *claims* the
key; the retry of a completed call gets the stored response without executing again; a
retry while the first is still running gets 409. Only calls the guest answered are
stored; a runner failure releases the claim so the client can retry. Entries expire after
a bounded TTL; the in-process backend is also bounded in size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from service.gateway.loopbound import PerLoop

MAX_KEY_CHARS = 255
PENDING_TTL_S = 120  # a claim whose holder died is released after this


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "headers": self.headers,
                           "body_b64": base64.b64encode(self.body).decode()})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredResponse:
        return cls(int(data["status"]), dict(data.get("headers") or {}), base64.b64decode(data.get("body_b64") or ""))


class ClaimState(Enum):
    CLAIMED = "claimed"  # go ahead and execute
    REPLAY = "replay"  # answer `response`
    IN_PROGRESS = "in_progress"  # another request with this key is running
    MISMATCH = "mismatch"  # the key was used for a different request


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    response: StoredResponse | None = None


class IdempotencyUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    """Whose keys these are: one tenant's install, as called by one principal."""

    tenant_id: str
    install_id: str
    principal_id: str

    def with_key(self, key: str) -> tuple[str, str, str, str]:
        return (self.tenant_id, self.install_id, self.principal_id, key)


def fingerprint(method: str, path: str, query: str, body: bytes, principal_id: str = "") -> str:
    doc = json.dumps([principal_id, method.upper(), path, query, hashlib.sha256(body).hexdigest()])
    return hashlib.sha256(doc.encode()).hexdigest()


class IdempotencyStore(Protocol):
    async def claim(self, scope: IdempotencyScope, key: str, fp: str) -> Claim: ...
    async def complete(self, scope: IdempotencyScope, key: str, fp: str, response: StoredResponse) -> None: ...
    async def release(self, scope: IdempotencyScope, key: str, fp: str) -> None: ...
    async def aclose(self) -> None: ...


def _decide(existing: dict[str, Any], fp: str) -> Claim:
    if existing.get("fp") != fp:
        return Claim(ClaimState.MISMATCH)
    if existing.get("state") == "done":
        return Claim(ClaimState.REPLAY, StoredResponse.from_json(existing["response"]))
    return Claim(ClaimState.IN_PROGRESS)


class InProcessIdempotencyStore:
    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._items: OrderedDict[tuple[str, str, str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, k: tuple[str, str, str, str], now: float) -> dict[str, Any] | None:
        hit = self._items.get(k)
        if hit is None:
            return None
        if hit[0] <= now:
            del self._items[k]
            return None
        return hit[1]

    def _put(self, k: tuple[str, str, str, str], value: dict[str, Any], ttl: float, now: float) -> None:
        self._items[k] = (now + ttl, value)
        self._items.move_to_end(k)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    async def claim(self, scope: IdempotencyScope, key: str, fp: str) -> Claim:
        k, now = scope.with_key(key), time.monotonic()
        with self._lock:
            existing = self._get(k, now)
            if existing is not None:
                return _decide(existing, fp)
            self._put(k, {"state": "pending", "fp": fp}, PENDING_TTL_S, now)
        return Claim(ClaimState.CLAIMED)

    async def complete(self, scope: IdempotencyScope, key: str, fp: str, response: StoredResponse) -> None:
        value = {"state": "done", "fp": fp, "response": json.loads(response.to_json())}
        with self._lock:
            self._put(scope.with_key(key), value, self.ttl_s, time.monotonic())

    async def release(self, scope: IdempotencyScope, key: str, fp: str) -> None:
        k = scope.with_key(key)
        with self._lock:
            existing = self._get(k, time.monotonic())
            if existing is not None and existing.get("state") == "pending" and existing.get("fp") == fp:
                del self._items[k]

    async def aclose(self) -> None:
        return None


# Delete the key only if it is still our pending claim.
_RELEASE_LUA = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisIdempotencyStore:
    def __init__(self, url: str, ttl_s: int, *, prefix: str = "extgate:idem") -> None:
        self.ttl_s = ttl_s
        self.prefix = prefix

        def make() -> tuple[Any, Any]:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
            return client, client.register_script(_RELEASE_LUA)

        async def close(item: tuple[Any, Any]) -> None:
            await item[0].aclose()

        self._clients: PerLoop[tuple[Any, Any]] = PerLoop(make, close)

    def key(self, scope: IdempotencyScope, key: str) -> str:
        # Client text (and the principal id) never becomes a Redis key verbatim.
        digest = hashlib.sha256(json.dumps([scope.principal_id, key]).encode()).hexdigest()
        return f"{self.prefix}:{{{scope.tenant_id}}}:{scope.install_id}:{digest}"

    @staticmethod
    def _pending(fp: str) -> str:
        return json.dumps({"state": "pending", "fp": fp})

    async def claim(self, scope: IdempotencyScope, key: str, fp: str) -> Claim:
        client, _ = self._clients.get()
        k = self.key(scope, key)
        try:
            if await client.set(k, self._pending(fp), nx=True, ex=PENDING_TTL_S):
                return Claim(ClaimState.CLAIMED)
            raw = await client.get(k)
        except Exception as exc:
            raise IdempotencyUnavailable(type(exc).__name__) from exc
        if raw is None:  # expired between SET NX and GET: let the client retry
            return Claim(ClaimState.IN_PROGRESS)
        return _decide(json.loads(raw), fp)

    async def complete(self, scope: IdempotencyScope, key: str, fp: str, response: StoredResponse) -> None:
        client, _ = self._clients.get()
        value = json.dumps({"state": "done", "fp": fp, "response": json.loads(response.to_json())})
        try:
            await client.set(self.key(scope, key), value, ex=self.ttl_s)
        except Exception as exc:
            raise IdempotencyUnavailable(type(exc).__name__) from exc

    async def release(self, scope: IdempotencyScope, key: str, fp: str) -> None:
        _, script = self._clients.get()
        try:
            await script(keys=[self.key(scope, key)], args=[self._pending(fp)])
        except Exception as exc:
            raise IdempotencyUnavailable(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._clients.aclose_current()
