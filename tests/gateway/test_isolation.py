"""Tenant isolation through the gateway (issue 17): one tenant's load never slows another
tenant's calls, and one user's idempotency key never answers another user's call."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.gateway.conftest import TENANT, GatewayEnv
from tests.gateway.test_pipeline import assert_error, record
from tests.support import token


def _loop_then_call_other_tenant(env: GatewayEnv) -> tuple[list[Any], Any, float]:
    """Two concurrent looping calls by one acme viewer, then globex's call."""
    with ThreadPoolExecutor(2) as pool:
        loops = [pool.submit(env.client.get, env.url("/loop"), headers=env.headers("viewer")) for _ in range(2)]
        time.sleep(0.3)  # both loop calls reached the runner
        started = time.monotonic()
        other = env.client.post(env.url("/echo"), content=b"hi", headers=env.headers("other-editor"))
        elapsed = time.monotonic() - started
        return [f.result(30) for f in loops], other, elapsed


def test_a_looping_tenant_does_not_stall_another_tenant(make_env, sqlite_url, monkeypatch) -> None:
    """Issue 17 (1): two looping calls by one acme viewer took both runner threads
    (EXTGATE_RUNNER_THREADS=2) and globex's call answered 504 after the full timeout."""
    monkeypatch.setenv("EXTGATE_RUNNER_THREADS", "2")
    env = make_env(sqlite_url, guest="faults", gateway={"timeout_ms": 3_000, "admission_timeout_ms": 500})
    loops, other, elapsed = _loop_then_call_other_tenant(env)
    assert other.status_code == 200 and other.content == b"hi"
    assert elapsed < 1.5
    # acme holds its share (one thread); its other call is refused fast, not after 3 s
    statuses = sorted(r.status_code for r in loops)
    assert statuses == [503, 504]
    busy = next(r for r in loops if r.status_code == 503)
    assert busy.json()["error"] == "runner_busy" and busy.headers["retry-after"] == "1"
    assert set(busy.json()) == {"error", "detail"} and set(busy.json()["detail"]) == {"request_id"}
    outcomes = [r["details"].get("error_class") for r in env.audit_records("execution.complete")
                if r.get("details")]
    assert "runner_busy" in outcomes


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_idempotency_keys_belong_to_the_caller(make_env, sqlite_url, backend, request) -> None:
    """Issue 17 (2): Bob, same tenant, same key and body, got Alice's stored response and his
    call never ran; with another body he got a 422 revealing the key was in use."""
    settings = {"redis_url": request.getfixturevalue("redis_url")} if backend == "redis" else {}
    env = make_env(sqlite_url, **settings)
    rec = record(env)
    key = {"x-idempotency-key": f"K-{backend}-{time.monotonic_ns()}"}
    alice = {"authorization": f"Bearer {token(env.container, TENANT, 'editor', sub='alice')}", **key}
    bob = {"authorization": f"Bearer {token(env.container, TENANT, 'editor', sub='bob')}", **key}

    first = env.client.put(env.url("/kv/notes/shared"), content=b"v", headers=alice)
    assert first.status_code == 200 and first.json()["revision"] == 1
    same = env.client.put(env.url("/kv/notes/shared"), content=b"v", headers=bob)
    assert same.status_code == 200 and "x-ext-idempotent-replay" not in same.headers
    assert same.json()["revision"] == 2  # Bob's call ran
    other_body = env.client.put(env.url("/kv/notes/shared"), content=b"w", headers=bob)
    assert_error(other_body, 422, "idempotency_key_reused")  # Bob's own key, reused by Bob
    other_path = env.client.put(env.url("/kv/notes/bob"), content=b"w", headers=alice)
    assert_error(other_path, 422, "idempotency_key_reused")
    # Alice's retry is still her own replay
    again = env.client.put(env.url("/kv/notes/shared"), content=b"v", headers=alice)
    assert again.headers["x-ext-idempotent-replay"] == "true" and again.json() == first.json()
    assert len(rec.calls) == 2
    assert rec.calls[0][0].user is not None and rec.calls[0][0].user.user_id == "alice"


@pytest.mark.slow
def test_remote_runners_apply_the_same_fairness(make_env, runners, sqlite_url) -> None:
    """The runner process schedules fairly too; the gateway passes `runner_busy` on as a 503."""
    from tests.gateway.test_remote_runner import use_runners

    env = make_env(sqlite_url, guest="faults", gateway={"timeout_ms": 3_000, "admission_timeout_ms": 500})
    runner = runners(env.container.settings.data_dir, sqlite_url, EXTGATE_RUNNER_THREADS="2")
    use_runners(env, [runner.url], timeout_ms=3_000, admission_timeout_ms=500)
    loops, other, elapsed = _loop_then_call_other_tenant(env)
    assert other.status_code == 200 and other.content == b"hi" and elapsed < 1.5
    assert sorted(r.status_code for r in loops) == [503, 504]
    assert next(r for r in loops if r.status_code == 503).json()["error"] == "runner_busy"


def test_redis_outage_is_503_for_extension_calls(make_env, sqlite_url) -> None:
    from tests.gateway.conftest import free_port

    env = make_env(sqlite_url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    r = env.client.get(env.url("/hello"), headers=env.headers("viewer"))
    assert_error(r, 503, "access_policy_unavailable")  # the rate limiter fails closed
    r = env.client.put(env.url("/kv/ns/k"), content=b"v", headers=env.headers("editor", **{"x-idempotency-key": "k"}))
    assert_error(r, 503, "access_policy_unavailable")
    assert "127.0.0.1" not in r.text
