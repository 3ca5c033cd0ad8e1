"""OpenTelemetry traces: the span tree of one call (in-memory exporter), a client's
`traceparent` continued, the trace carried to a remote `extgate runner serve` (its own SDK,
configured by OTEL_* only, exporting to its stdout), and nothing at all while tracing is off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runner import tracing
from tests.gateway.conftest import ROOT, SECRET_VALUE, free_port
from tests.gateway.test_remote_runner import use_runners

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named: dict[str, ReadableSpan] = {}
    for span in finished:
        named.setdefault(span.name, span)  # the first of each name
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_span_tree_of_one_call(make_env, sqlite_url, spans) -> None:
    env = make_env(sqlite_url)  # the demo guest: its /kv route calls the storage host interface
    answer = env.client.put(env.url("/kv/notes/first"), content=b"v", headers=env.headers("editor"))
    assert answer.status_code == 200, answer.text
    named = by_name(spans.get_finished_spans())
    gateway = named["extgate.gateway"]
    assert gateway.parent is None
    assert gateway.attributes is not None
    assert gateway.attributes["extgate.request_id"] == answer.headers["x-request-id"]
    tree = {
        "extgate.authorize": "extgate.gateway",
        "extgate.policy.decide": "extgate.authorize",
        "extgate.audit.append": "extgate.gateway",
        "extgate.runner.dispatch": "extgate.gateway",
        "extgate.runner.run": "extgate.runner.dispatch",  # continued from the traceparent header
        "extgate.guest.instantiate": "extgate.runner.run",
        "extgate.guest.call": "extgate.runner.run",
        "extgate.host.storage.put": "extgate.guest.call",
    }
    for child, parent in tree.items():
        assert child in named, sorted(named)
        assert parent_of(named[child]) == named[parent].context.span_id, (child, parent)
        assert named[child].context.trace_id == gateway.context.trace_id
    for span in spans.get_finished_spans():  # ids and codes only
        assert SECRET_VALUE not in json.dumps(dict(span.attributes or {}))


def test_client_traceparent_is_continued(make_env, sqlite_url, spans) -> None:
    env = make_env(sqlite_url, guest="faults")
    headers = env.headers("editor", traceparent=f"00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01")
    assert env.client.post(env.url("/echo"), content=b"ok", headers=headers).status_code == 200
    gateway = by_name(spans.get_finished_spans())["extgate.gateway"]
    assert format(gateway.context.trace_id, "032x") == CLIENT_TRACE_ID
    assert gateway.parent is not None and gateway.parent.span_id == 0x00F067AA0BA902B7


def start_traced_runner(data_dir: Path, database_url: str, stdout: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "EXTGATE_DATA_DIR": str(data_dir), "EXTGATE_DATABASE_URL": database_url,
           "EXTGATE_RUNNER_THREADS": "2", "EXTGATE_ALLOW_DEV_KEYS": "1", "PYTHONPATH": str(ROOT),
           "OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "runner-test"}
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [str(ROOT / ".venv" / "bin" / "extgate"), "runner", "serve", "--port", str(port)],
        env=env, stdout=stdout.open("wb"), stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("runner subprocess did not start")


def exported_spans(text: str) -> list[dict[str, Any]]:
    """The console exporter's JSON objects (one per span, pretty-printed)."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while (start := text.find("{", at)) != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            at = start + 1
            continue
        found.append(obj)
        at = end
    return [o for o in found if isinstance(o, dict) and "context" in o]


def test_remote_runner_continues_the_trace(make_env, sqlite_url, spans, tmp_path) -> None:
    env = make_env(sqlite_url, guest="faults")
    stdout = tmp_path / "runner-stdout.txt"
    url, proc = start_traced_runner(env.container.settings.data_dir, sqlite_url, stdout)
    try:
        use_runners(env, [url])
        assert env.client.post(env.url("/echo"), content=b"ok", headers=env.headers("editor")).status_code == 200
        dispatch = by_name(spans.get_finished_spans())["extgate.runner.dispatch"]
        trace_id = f"0x{dispatch.context.trace_id:032x}"
        deadline = time.monotonic() + 15
        remote: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            remote = [s for s in exported_spans(stdout.read_text()) if s["context"]["trace_id"] == trace_id]
            if any(s["name"] == "extgate.guest.call" for s in remote):
                break
            time.sleep(0.2)
        run = next(s for s in remote if s["name"] == "extgate.runner.run")
        assert run["parent_id"] == f"0x{dispatch.context.span_id:016x}"
        assert run["resource"]["attributes"]["service.name"] == "runner-test"
        assert {"extgate.guest.instantiate", "extgate.guest.call"} <= {s["name"] for s in remote}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_tracing_off_creates_nothing(make_env, sqlite_url) -> None:
    assert not tracing.enabled()  # no OTEL_TRACES_EXPORTER: off
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}
    assert tracing.span("a") is tracing.span("b")  # one shared no-op context
    assert tracing.current_trace_id() is None
    env = make_env(sqlite_url, guest="faults")
    assert env.client.post(env.url("/echo"), content=b"ok", headers=env.headers("editor")).status_code == 200


def test_configure_tracing_reads_only_otel_variables(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert tracing.configure_tracing("extgate-test") is False
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.configure_tracing("extgate-test") is False
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.configure_tracing("extgate-test") is False
    assert not tracing.enabled()
