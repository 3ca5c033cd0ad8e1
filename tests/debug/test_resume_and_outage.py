"""`Last-Event-ID` resume, trimmed-resume `gap`, and a Redis outage mid-session."""

from __future__ import annotations

import time

import pytest

from runner.debug import DebugEvent
from runner.debug.config import DebugPublisherSettings
from runner.debug.publisher import DebugPublisher
from runner.debug.streams import RedisStreamWriter
from tests.gateway.conftest import TENANT

pytestmark = pytest.mark.redis


def publisher(url: str, prefix: str, **kw: object) -> DebugPublisher:
    s = DebugPublisherSettings(redis_url=url, key_prefix=prefix, rate_per_s=1e6, rate_burst=1_000_000,
                               breaker_min_s=0.2, breaker_max_s=0.5, **kw)  # type: ignore[arg-type]
    return DebugPublisher(RedisStreamWriter(url, maxlen=s.stream_maxlen, ttl_s=60, connect_timeout_s=0.5,
                                            socket_timeout_s=1.0), s)


def line(env, i: int) -> DebugEvent:  # type: ignore[no-untyped-def]
    return DebugEvent(TENANT, env.extension_id, env.install_id, "v1", f"r{i}", "stdout", "info", f"line {i}")


def test_last_event_id_resumes_exactly(make_debug_env, redis_url, debug_settings) -> None:  # type: ignore[no-untyped-def]
    env = make_debug_env(redis_url)
    pub = publisher(redis_url, debug_settings["EXTGATE_DEBUG_KEY_PREFIX"])
    try:
        reader = env.watch()
        for i in range(5):
            pub.publish(line(env, i))
        ids = [reader.expect("log")[0] for _ in range(5)]
        reader.close()
        for i in range(5, 8):
            pub.publish(line(env, i))
        assert pub.flush(5)
        resumed = env.watch(last_event_id=ids[2])
        got = [resumed.expect("log")[1]["message"] for _ in range(5)]
        assert got == ["line 3", "line 4", "line 5", "line 6", "line 7"]
        assert not any(e == "gap" for e, _, _ in resumed.seen)
    finally:
        pub.close()


def test_trimmed_resume_point_yields_gap(make_debug_env, redis_url, debug_settings) -> None:  # type: ignore[no-untyped-def]
    env = make_debug_env(redis_url)
    pub = publisher(redis_url, debug_settings["EXTGATE_DEBUG_KEY_PREFIX"], stream_maxlen=10)
    try:
        pub.publish(line(env, 0))
        assert pub.flush(5)
        time.sleep(0.1)
        import redis

        r = redis.Redis.from_url(redis_url)
        key = next(iter(r.scan_iter(match=debug_settings["EXTGATE_DEBUG_KEY_PREFIX"] + ":*", count=1000)))
        first_id = r.xrange(key, count=1)[0][0].decode()
        for i in range(1, 1500):  # `MAXLEN ~ 10` trims whole macro nodes: write well past one
            pub.publish(line(env, i))
        assert pub.flush(10)
        time.sleep(0.2)
        assert r.xrange(key, min=first_id, max=first_id) == []
        reader = env.watch(last_event_id=first_id)
        _, gap = reader.expect("gap")
        assert gap["reason"] == "trimmed" and gap["requested_after"] == first_id and gap["oldest_available"]
        _, data = reader.expect("log")
        assert data["message"] != "line 1"
    finally:
        pub.close()


def test_redis_outage_mid_session(make_debug_env, private_redis) -> None:  # type: ignore[no-untyped-def]
    env = make_debug_env(private_redis.url)
    reader = env.watch()
    assert env.call("/log").status_code == 200
    reader.expect("log", message="stderr line")

    private_redis.stop()
    reader.expect("warning", timeout=15, code="redis_unavailable")
    # The gateway keeps serving extension calls; their lines wait in the runner's ring buffer.
    during = set()
    for _ in range(3):
        resp = env.call("/log")
        assert resp.status_code == 200, resp.text
        during.add(resp.headers["x-request-id"])

    private_redis.start()
    reader.expect("info", timeout=20, code="redis_recovered")
    _, data = reader.expect("log", timeout=20, message="stderr line")
    assert data["backfill"] is True
    backfilled = [d for e, _, d in reader.seen if e == "log" and d["backfill"]]
    while len(backfilled) < 18:  # 3 calls x 6 lines
        _, d = reader.expect("log", timeout=20)
        if d["backfill"]:
            backfilled.append(d)
    assert {d["request_id"] for d in backfilled} >= during
    # and live lines flow again
    after = env.call("/log")
    assert after.status_code == 200
    reader.expect("log", timeout=20, request_id=after.headers["x-request-id"], message="stderr line")
