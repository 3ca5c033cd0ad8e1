"""Token-bucket rate limits per tenant + install: one interface, two backends.

`InProcessRateLimiter` serves the embedded default (one process). `RedisRateLimiter`
keeps the bucket in Redis, updated by one Lua script (atomic, server clock), so every
gateway replica draws from the same bucket. A limiter that cannot decide raises
`RateLimitUnavailable`; the gateway then refuses the call (503), it never lets it through.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from service.gateway.loopbound import PerLoop


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_s: int = 0  # whole seconds, ≥ 1 when refused


class RateLimitUnavailable(Exception):
    pass


class RateLimiter(Protocol):
    async def acquire(self, tenant_id: str, install_id: str) -> RateDecision: ...
    async def aclose(self) -> None: ...


def _retry_after(missing_tokens: float, per_second: float) -> int:
    return max(1, math.ceil(missing_tokens / per_second))


class InProcessRateLimiter:
    def __init__(self, burst: int, per_second: float, *, max_buckets: int = 100_000) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self._max = max_buckets
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def try_acquire(self, tenant_id: str, install_id: str, now: float | None = None) -> RateDecision:
        t = time.monotonic() if now is None else now
        key = (tenant_id, install_id)
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.per_second)
            if tokens >= 1.0:
                decision = RateDecision(True)
                tokens -= 1.0
            else:
                decision = RateDecision(False, _retry_after(1.0 - tokens, self.per_second))
            self._buckets[key] = (tokens, t)
            self._buckets.move_to_end(key)
            # Evicting the least recently used bucket refills it: a bounded map can only
            # ever be more generous, never lock a tenant out.
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return decision

    async def acquire(self, tenant_id: str, install_id: str) -> RateDecision:
        return self.try_acquire(tenant_id, install_id)

    async def aclose(self) -> None:
        return None


# KEYS[1] bucket; ARGV: burst, tokens per second. Returns {allowed, retry_after_ms}.
# TIME is the Redis server's clock, so replicas with skewed clocks share one bucket.
_BUCKET_SCRIPT = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, retry_ms}
"""


class RedisRateLimiter:
    def __init__(self, url: str, burst: int, per_second: float, *, prefix: str = "extgate:ratelimit") -> None:
        self.burst = burst
        self.per_second = per_second
        self.prefix = prefix

        def make() -> tuple[Any, Any]:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
            return client, client.register_script(_BUCKET_SCRIPT)

        async def close(item: tuple[Any, Any]) -> None:
            await item[0].aclose()

        self._clients: PerLoop[tuple[Any, Any]] = PerLoop(make, close)

    def key(self, tenant_id: str, install_id: str) -> str:
        # {tenant} hash tag: one tenant's keys stay on one Redis Cluster slot.
        return f"{self.prefix}:{{{tenant_id}}}:{install_id}"

    async def acquire(self, tenant_id: str, install_id: str) -> RateDecision:
        _client, script = self._clients.get()
        try:
            allowed, retry_ms = await script(keys=[self.key(tenant_id, install_id)],
                                             args=[self.burst, repr(float(self.per_second))])
        except Exception as exc:  # redis errors of every kind: fail closed
            raise RateLimitUnavailable(type(exc).__name__) from exc
        if int(allowed) == 1:
            return RateDecision(True)
        return RateDecision(False, max(1, math.ceil(int(retry_ms) / 1000)))

    async def aclose(self) -> None:
        await self._clients.aclose_current()
