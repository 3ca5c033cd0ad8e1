"""Operability: `/metrics` (families, bounded labels, nothing secret), `/readyz` by name,
JSON logs without secrets, and `/docs` served without a network."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.contract.execute import ExecuteRequest, ExecuteResponse
from runner.logging_config import JsonFormatter
from service.gateway.transport import RunnerUnavailable
from tests.gateway.conftest import OTHER, SECRET_VALUE, TENANT, GatewayEnv

# Every label name any extgate family may carry: bounded sets only, `tenant` only for the
# allowlisted per-tenant series and the runner's queue depth (allowlisted, else "other").
ALLOWED_LABELS = {"route_class", "method", "status_class", "code", "action", "outcome", "kind", "result",
                  "reason", "revision", "tenant", "le"}


def scrape(env: GatewayEnv) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = env.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_calls_decisions_runner_and_audit(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults")
    before = scrape(env)
    assert env.client.post(env.url("/echo"), content=b"ok", headers=env.headers("editor")).status_code == 200
    assert env.client.get(env.url("/trap"), headers={"authorization": "Bearer nope"}).status_code == 401
    assert env.client.get(env.url("/trap"), headers=env.headers()).status_code == 502
    after = scrape(env)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("extgate_http_requests_total", route_class="gateway", method="POST", status_class="2xx",
                code="none") == 1
    assert grew("extgate_http_requests_total", route_class="gateway", method="GET", status_class="4xx",
                code="unauthenticated") == 1
    assert grew("extgate_http_requests_total", route_class="gateway", method="GET", status_class="5xx",
                code="bad_gateway") == 1
    assert grew("extgate_http_request_duration_seconds_count", route_class="gateway", method="GET") == 2
    assert grew("extgate_policy_decisions_total", action="invoke", outcome="allow") == 2
    assert grew("extgate_policy_decision_duration_seconds_count", action="invoke") == 2
    assert grew("extgate_runner_calls_total", outcome="ok") == 1
    assert grew("extgate_runner_calls_total", outcome="guest_crash") == 1
    assert grew("extgate_runner_artifact_cache_total", result="hit") == 2
    assert grew("extgate_runner_instantiate_duration_seconds_count") == 2
    assert grew("extgate_audit_records_appended_total") >= 2  # the allow decisions, awaited
    assert value(after, "extgate_audit_writer_healthy") == 1
    revision = env.container.policy.revision
    assert value(after, "extgate_policy_active_revision_info", revision=revision) == 1
    assert value(after, "extgate_policy_bundle_loaded") == 1


def test_metrics_never_carry_secrets_ids_or_unlisted_tenants(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="headers")
    response = env.client.get(env.url("/headers"), headers=env.headers())
    env.client.get(env.url("/headers"), headers=env.headers("other-editor"))
    text = env.client.get("/metrics").text
    for secret in (SECRET_VALUE, env.tokens["viewer"], response.headers["x-request-id"], env.install_id,
                   f'"{TENANT}"', f'"{OTHER}"', "viewer-user"):
        assert secret not in text
    for family in text_string_to_metric_families(text):
        if family.name.startswith("extgate_"):
            for sample in family.samples:
                assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)


def test_allowlisted_tenants_get_their_own_series(make_env, sqlite_url, monkeypatch) -> None:
    monkeypatch.setenv("EXTGATE_METRICS_TENANTS", TENANT)
    env = make_env(sqlite_url, guest="headers")
    before = scrape(env)
    env.client.get(env.url("/headers"), headers=env.headers())
    env.client.get(env.url("/headers"), headers=env.headers("other-editor"))
    after = scrape(env)
    labels = {"tenant": TENANT, "status_class": "2xx"}
    assert (value(after, "extgate_tenant_gateway_calls_total", **labels)
            - value(before, "extgate_tenant_gateway_calls_total", **labels)) == 1
    assert not any(dict(key[1]).get("tenant") == OTHER for key in after)


def test_metrics_token_and_switch(make_env, sqlite_url, monkeypatch) -> None:
    monkeypatch.setenv("EXTGATE_METRICS_TOKEN", "scrape-token-1234")
    env = make_env(sqlite_url, guest="headers")
    assert env.client.get("/metrics").status_code == 401
    assert env.client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert env.client.get("/metrics", headers={"authorization": "Bearer scrape-token-1234"}).status_code == 200
    monkeypatch.setenv("EXTGATE_METRICS_ENABLED", "false")
    off = make_env(sqlite_url, guest="faults")
    assert off.client.get("/metrics").status_code == 404


def test_readyz_reports_each_dependency_by_name(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="headers")
    assert env.client.get("/healthz").json() == {"status": "ok"}
    ready = env.client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    checks = ready.json()["checks"]
    assert {"database", "policy", "audit_writer"} <= set(checks)
    assert checks["policy"] == {"ok": True, "revision": env.container.policy.revision}
    assert checks["audit_writer"]["ok"] is True and "redis" not in checks and "runners" not in checks

    env.container.audit.close()  # the writer stops: appends would fail, so not ready
    stopped = env.client.get("/readyz")
    assert stopped.status_code == 503
    assert stopped.json()["checks"]["audit_writer"]["ok"] is False
    assert stopped.json()["checks"]["database"]["ok"] is True


def test_readyz_checks_redis_and_runners_when_configured(make_env, sqlite_url) -> None:
    from service.observability.readiness import redis_probe, runners_probe

    env = make_env(sqlite_url, guest="headers")
    probes = env.container.extras["readiness_probes"]
    probes["redis"] = redis_probe("redis://127.0.0.1:1/0")  # nothing listens on port 1
    probes["runners"] = runners_probe(["http://127.0.0.1:1"])
    body = env.client.get("/readyz")
    assert body.status_code == 503
    checks = body.json()["checks"]
    assert checks["redis"]["ok"] is False and checks["redis"]["reason"]  # a class name, never the error text
    assert checks["runners"] == {"ok": False, "configured": 1, "reason": "no runner answers /healthz"}


class _DownTransport:
    name = "down"

    async def execute(self, request: ExecuteRequest, headers: Mapping[str, str], *,
                      deadline_s: float) -> ExecuteResponse:
        raise RunnerUnavailable("connection refused")

    async def aclose(self) -> None:
        return None


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_logs_carry_request_context_and_never_a_secret(make_env, sqlite_url, json_log) -> None:
    env = make_env(sqlite_url, guest="faults")  # its installs hold SECRET_VALUE
    assert env.client.post(env.url("/echo"), content=b"ok", headers=env.headers("editor")).status_code == 200
    assert env.client.get(env.url("/trap"), headers=env.headers()).status_code == 502
    down = make_env(sqlite_url, guest="headers", transport=_DownTransport())
    refused = down.client.get(down.url("/headers"), headers=down.headers())
    assert refused.status_code == 502

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    warning = next(line for line in lines if line["message"].startswith("runner unavailable for request"))
    assert warning["request_id"] == refused.headers["x-request-id"]
    assert warning["tenant"] == TENANT
    assert warning["install"] == down.install_id
    assert warning["extension"] == down.slug
    text = json_log.getvalue()
    for secret in (SECRET_VALUE, env.tokens["viewer"], down.tokens["viewer"]):
        assert secret not in text


def test_docs_are_served_from_the_package(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="headers")
    page = env.client.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "/docs/assets/swagger-ui.css" in page.text
    redoc = env.client.get("/redoc").text
    assert "/docs/assets/redoc.standalone.js" in redoc
    for html in (page.text, redoc):
        assert "https://" not in html and "http://" not in html  # no CDN, no web fonts
    script = env.client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 500_000
    assert env.client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert env.client.get("/docs/assets/redoc.standalone.js").status_code == 200
    assert env.client.get("/openapi.json").json()["openapi"].startswith("3.1")

