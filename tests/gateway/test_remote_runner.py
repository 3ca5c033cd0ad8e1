"""The gateway against real `extgate runner serve` subprocesses over HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

from service.gateway import GatewaySettings, build_gateway
from service.gateway.transport_http import HttpRunnerTransport
from service.registry import install_config
from tests.gateway.conftest import TENANT, GatewayEnv, free_port


def use_runners(env: GatewayEnv, urls: list[str], **gateway: Any) -> HttpRunnerTransport:
    env.container.gateway.close()
    env.container.settings.runner_url = ",".join(urls)
    env.container.gateway = build_gateway(env.container, GatewaySettings(rate_limit_burst=1000, **gateway))
    transport = env.container.gateway.transport
    assert isinstance(transport, HttpRunnerTransport)
    return transport


def test_remote_runner_end_to_end(make_env, runners, postgres_url) -> None:
    env = make_env(postgres_url)
    runner = runners(env.container.settings.data_dir, postgres_url)
    use_runners(env, [runner.url])
    h = env.headers("editor")
    r = env.client.get(env.url("/hello"), headers=h)
    assert r.status_code == 200 and r.json()["install"] == env.install_id
    assert env.client.get(env.url("/secret-check?key=api_key"), headers=h).json()["present"] is True
    assert env.client.put(env.url("/kv/ns/k"), content=b"v", headers=h).json()["revision"] == 1
    install_config.set_config(env.container.db, TENANT, env.install_id, {"greeting": "v2"})
    assert env.client.get(env.url("/config"), headers=h).json() == {"greeting": "v2"}


def test_guest_timeout_is_504_remote(make_env, runners, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults")
    runner = runners(env.container.settings.data_dir, sqlite_url)
    use_runners(env, [runner.url], timeout_ms=300)
    r = env.client.get(env.url("/loop"), headers=env.headers("viewer"))
    assert (r.status_code, r.json()["error"]) == (504, "gateway_timeout")


def test_runner_killed_mid_run_then_next_request_recovers(make_env, runners, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults")
    a = runners(env.container.settings.data_dir, sqlite_url)
    b = runners(env.container.settings.data_dir, sqlite_url)
    transport = use_runners(env, [a.url, b.url], timeout_ms=20_000)
    primary_url = transport.order(env.content_hash)[0]
    primary = a if primary_url == a.url else b

    killer = threading.Timer(1.0, primary.kill)
    killer.start()
    started = time.monotonic()
    r = env.client.get(env.url("/loop"), headers=env.headers("viewer"))
    killer.join()
    assert r.status_code == 502
    assert r.json() == {"error": "bad_gateway", "detail": {"request_id": r.headers["x-request-id"]}}
    assert time.monotonic() - started < 10  # not the 20 s deadline

    ok = env.client.post(env.url("/echo"), content=b"still here", headers=env.headers("editor"))
    assert ok.status_code == 200 and ok.content == b"still here"


def test_all_runners_down_is_503(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults")
    use_runners(env, [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"])
    r = env.client.post(env.url("/echo"), content=b"x", headers=env.headers("editor"))
    assert r.status_code == 503 and r.json()["error"] == "runner_unavailable"
    assert r.json()["detail"]["request_id"] == r.headers["x-request-id"] and r.headers["retry-after"] == "1"


def test_wrong_service_credential_is_502_without_runner_text(make_env, runners, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults")
    runner = runners(env.container.settings.data_dir, sqlite_url, EXTGATE_RUNNER_TOKEN="a-different-token-0123456789")
    use_runners(env, [runner.url])
    r = env.client.post(env.url("/echo"), content=b"x", headers=env.headers("editor"))
    assert r.status_code == 502 and "unauthenticated" not in r.text
