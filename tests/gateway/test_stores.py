"""Rate-limit and idempotency backends (in-process and real Redis) and rendezvous ranking."""

from __future__ import annotations

import asyncio
import uuid

from service.gateway.idempotency import (
    ClaimState,
    IdempotencyScope,
    InProcessIdempotencyStore,
    RedisIdempotencyStore,
    StoredResponse,
    fingerprint,
)
from service.gateway.ratelimit import InProcessRateLimiter, RedisRateLimiter
from service.gateway.rendezvous import rank


def test_in_process_token_bucket_refills_and_reports_retry_after() -> None:
    limiter = InProcessRateLimiter(burst=2, per_second=0.5)
    assert [limiter.try_acquire("t", "i", now=0.0).allowed for _ in range(3)] == [True, True, False]
    assert limiter.try_acquire("t", "i", now=0.0).retry_after_s == 2
    assert limiter.try_acquire("t", "other", now=0.0).allowed  # per install
    assert limiter.try_acquire("t", "i", now=2.0).allowed  # one token back after 2 s


def test_in_process_buckets_are_bounded() -> None:
    limiter = InProcessRateLimiter(burst=1, per_second=1, max_buckets=10)
    for n in range(100):
        limiter.try_acquire("t", str(n), now=0.0)
    assert len(limiter._buckets) == 10


def test_redis_token_bucket_is_shared_between_replicas(redis_url) -> None:
    async def run() -> list[bool]:
        prefix = f"extgate-test:{uuid.uuid4().hex}"
        a = RedisRateLimiter(redis_url, 3, 0.1, prefix=prefix)
        b = RedisRateLimiter(redis_url, 3, 0.1, prefix=prefix)  # another gateway replica
        out = [(await lim.acquire("t", "i")).allowed for lim in (a, b, a, b)]
        refused = await b.acquire("t", "i")
        assert refused.retry_after_s >= 1
        await a.aclose()
        await b.aclose()
        return out

    assert asyncio.run(run()) == [True, True, True, False]


def _exercise(store: object) -> None:
    def scope(tenant: str = "t", install: str = "i", principal: str = "alice") -> IdempotencyScope:
        return IdempotencyScope(tenant, install, principal)

    async def run() -> None:
        fp = fingerprint("POST", "/x", "", b"body", "alice")
        other_fp = fingerprint("POST", "/x", "", b"other", "alice")
        assert (await store.claim(scope(), "k", fp)).state is ClaimState.CLAIMED  # type: ignore[attr-defined]
        assert (await store.claim(scope(), "k", fp)).state is ClaimState.IN_PROGRESS  # type: ignore[attr-defined]
        await store.complete(scope(), "k", fp, StoredResponse(201, {"etag": "e"}, b"first"))  # type: ignore[attr-defined]
        replay = await store.claim(scope(), "k", fp)  # type: ignore[attr-defined]
        assert replay.state is ClaimState.REPLAY and replay.response == StoredResponse(201, {"etag": "e"}, b"first")
        assert (await store.claim(scope(), "k", other_fp)).state is ClaimState.MISMATCH  # type: ignore[attr-defined]
        # scoped by tenant, install and principal: another user's identical key is another key
        assert (await store.claim(scope("t2"), "k", fp)).state is ClaimState.CLAIMED  # type: ignore[attr-defined]
        assert (await store.claim(scope(install="i2"), "k", fp)).state is ClaimState.CLAIMED  # type: ignore[attr-defined]
        bob_fp = fingerprint("POST", "/x", "", b"body", "bob")
        assert bob_fp != fp  # the principal is part of the fingerprint too
        bob = await store.claim(scope(principal="bob"), "k", bob_fp)  # type: ignore[attr-defined]
        assert bob.state is ClaimState.CLAIMED
        # a released claim can be taken again
        await store.release(scope("t2"), "k", fp)  # type: ignore[attr-defined]
        assert (await store.claim(scope("t2"), "k", fp)).state is ClaimState.CLAIMED  # type: ignore[attr-defined]
        await store.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())


def test_in_process_idempotency() -> None:
    _exercise(InProcessIdempotencyStore(ttl_s=60, max_entries=100))


def test_in_process_idempotency_is_bounded() -> None:
    store = InProcessIdempotencyStore(ttl_s=60, max_entries=5)

    async def run() -> None:
        for n in range(50):
            await store.claim(IdempotencyScope("t", "i", "p"), str(n), "fp")

    asyncio.run(run())
    assert len(store._items) == 5


def test_redis_idempotency(redis_url) -> None:
    _exercise(RedisIdempotencyStore(redis_url, 60, prefix=f"extgate-test:{uuid.uuid4().hex}"))


def test_rendezvous_is_stable_and_moves_little() -> None:
    nodes = [f"http://r{i}:8080" for i in range(4)]
    keys = [f"sha256:{i:064x}" for i in range(400)]
    first = {k: rank(nodes, k)[0] for k in keys}
    assert {k: rank(list(reversed(nodes)), k)[0] for k in keys} == first  # order-independent
    assert len(set(first.values())) == 4  # spread
    removed = nodes[1]
    after = {k: rank([n for n in nodes if n != removed], k)[0] for k in keys}
    moved = [k for k in keys if first[k] != after[k]]
    assert all(first[k] == removed for k in moved)  # only the removed runner's share moves
