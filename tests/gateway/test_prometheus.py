"""A real Prometheus (Debian's `prometheus`, installed by .ci/run) scrapes a running gateway
and a running `extgate runner serve`, with the shipped alert rules loaded; `promtool` checks
the rules; every metric the rules and the Grafana dashboard use is one extgate defines.

Skipped only when the binaries are missing and EXTGATE_REQUIRE_SERVICES is not set.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY

from service.app import create_app
from tests.conftest import REQUIRE_SERVICES
from tests.gateway.conftest import ROOT, GatewayEnv, free_port
from tests.gateway.test_remote_runner import use_runners

RULES = ROOT / "deploy" / "prometheus" / "extgate-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "extgate-dashboard.json"
WAIT_S = 20.0


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{name} not installed but EXTGATE_REQUIRE_SERVICES=1 (.ci/run installs it)")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return found


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def serve_app() -> Iterator[Callable[[GatewayEnv], str]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(env: GatewayEnv) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(container=env.container), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, name="test-gateway", daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_for("the gateway to start", lambda: server.started)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(targets: dict[str, str]) -> str:
        executable = binary("prometheus")
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{url.removeprefix('http://')}']\n"
            for job, url in targets.items()
        )
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\nscrape_configs:\n{jobs}"
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen(  # noqa: S603 - the system's prometheus, our config
            [executable, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for("Prometheus to be ready", lambda: proc.poll() is None
                 and httpx.get(f"{url}/-/ready", timeout=1).status_code == 200)
        return url

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def query(prom: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=2).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_real_prometheus_scrapes_gateway_and_runner(make_env, runners, sqlite_url, serve_app, prometheus) -> None:
    env = make_env(sqlite_url, guest="faults")
    runner = runners(env.container.settings.data_dir, sqlite_url)
    use_runners(env, [runner.url])
    gateway = serve_app(env)
    prom = prometheus({"gateway": gateway, "runner": runner.url})

    with httpx.Client(base_url=gateway, timeout=10) as client:
        for _ in range(5):
            answer = client.post(env.url("/echo"), content=b"ok", headers=env.headers("editor"))
            assert answer.status_code == 200 and answer.content == b"ok"
        assert client.get(env.url("/echo"), headers={"authorization": "Bearer nope"}).status_code == 401

    def up_targets() -> bool:
        targets = httpx.get(f"{prom}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        return len(targets) == 2 and all(t["health"] == "up" for t in targets)

    wait_for("both targets up", up_targets)
    ok_calls = 'sum(extgate_http_requests_total{job="gateway", route_class="gateway", status_class="2xx"})'
    wait_for("5 gateway calls in Prometheus",
             lambda: (r := query(prom, ok_calls)) and float(r[0]["value"][1]) >= 5)
    refused = 'sum(extgate_http_requests_total{job="gateway", code="unauthenticated"})'
    wait_for("the refused call", lambda: (r := query(prom, refused)) and float(r[0]["value"][1]) >= 1)
    runner_ok = 'sum(extgate_runner_calls_total{job="runner", outcome="ok"})'
    wait_for("5 runner calls in Prometheus",
             lambda: (r := query(prom, runner_ok)) and float(r[0]["value"][1]) >= 5)

    names = httpx.get(f"{prom}/api/v1/label/__name__/values", timeout=2).json()["data"]
    extgate_names = {n for n in names if n.startswith("extgate_")}
    for expected in ("extgate_http_request_duration_seconds_bucket", "extgate_policy_decisions_total",
                     "extgate_policy_active_revision_info", "extgate_audit_records_appended_total",
                     "extgate_audit_commit_duration_seconds_bucket", "extgate_audit_queue_depth",
                     "extgate_runner_queue_depth", "extgate_runner_call_duration_seconds_bucket"):
        assert expected in extgate_names, sorted(extgate_names)
    # The runner process has no gateway families: each process exposes what it does.
    assert query(prom, 'extgate_http_requests_total{job="runner"}') == []

    def rules_evaluated() -> bool:
        groups = httpx.get(f"{prom}/api/v1/rules", timeout=2).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return len(rules) == 8 and all(rule["health"] == "ok" for rule in rules)

    wait_for("the alert rules to load and evaluate", rules_evaluated)


def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run([binary("promtool"), "check", "rules", str(RULES)],  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def _family(sample_name: str) -> str:
    for suffix in ("_total", "_bucket", "_count", "_sum", "_info"):
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return sample_name


def test_rules_and_dashboard_use_only_metrics_extgate_defines(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults")
    env.client.post(env.url("/echo"), content=b"ok", headers=env.headers("editor"))  # the embedded runner exists
    defined = {family.name for family in REGISTRY.collect() if family.name.startswith("extgate_")}
    # Families that exist only with state this test does not create: a signed checkpoint, a
    # debug publisher. Their names are checked against the code that defines them.
    sources = "\n".join(p.read_text() for p in (ROOT / "audit" / "metrics.py", ROOT / "runner" / "metrics.py"))
    defined |= set(re.findall(r'"(extgate_[a-z_]+)"', sources))
    used = set(re.findall(r"extgate_[a-z_]+", RULES.read_text()))
    used |= set(re.findall(r"extgate_[a-z_]+", json.dumps(json.loads(DASHBOARD.read_text()))))
    unknown = {name for name in used if _family(name) not in defined and name not in defined}
    assert not unknown, f"rules/dashboard use metrics extgate does not define: {sorted(unknown)}"
