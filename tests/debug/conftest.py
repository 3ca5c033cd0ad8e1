"""Debug-stream fixtures: a real server (uvicorn in a thread, so SSE really streams), the
demo guest installed for tenants, SSE readers, and a private redis-server for outages.

The debug backend is chosen from the environment (EXTGATE_DEBUG_REDIS_URL), exactly as in
production: the embedded runner and the service read the same variables.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.cli.debug import parse_sse
from service.container import ServiceContainer
from tests.gateway.conftest import OTHER, TENANT, guest_manifest, install_for, publish_guest
from tests.support import make_container, token

NO_DEBUG_TENANT = "initech"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class SSEReader:
    """Reads one SSE response on a thread; `expect` waits (bounded) for a matching event."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, str | None, dict[str, Any]]] = queue.Queue()
        self.seen: list[tuple[str, str | None, dict[str, Any]]] = []
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=60.0))
        self._response: httpx.Response | None = None
        self._url, self._headers = url, headers or {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(15), "stream did not open"

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self._url, headers=self._headers) as resp:
                self._response = resp
                self.status = resp.status_code
                self._ready.set()
                for event, entry_id, data in parse_sse(resp.iter_lines()):
                    self.events.put((event, entry_id, json.loads(data)))
        except Exception:  # noqa: BLE001 - closed by the test
            pass
        finally:
            self._ready.set()
            self.events.put(("closed", None, {}))

    def expect(self, kind: str, timeout: float = 15.0, **match: Any) -> tuple[str | None, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} {match} event; seen {[(e, d) for e, _, d in self.seen][-5:]}")
            try:
                event, entry_id, data = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append((event, entry_id, data))
            if event == kind and all(data.get(k) == v for k, v in match.items()):
                return entry_id, data
            if event == "closed" and kind != "closed":
                raise AssertionError(f"stream closed before {kind} {match}; seen {[(e, d) for e, _, d in self.seen]}")

    def close(self) -> None:
        """Hang up like a browser tab closing: shut the socket down, which also wakes the
        reader thread (closing the client from another thread leaves an active stream open)."""
        stream = self._response.extensions.get("network_stream") if self._response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(timeout=5)


@dataclass
class DebugEnv:
    container: ServiceContainer
    server: ServerThread
    slug: str
    extension_id: str
    install_id: str
    other_install_id: str
    plain_install_id: str
    tokens: dict[str, str] = field(default_factory=dict)
    readers: list[SSEReader] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[who]}"}

    def open(self, who: str = "operator", **body: Any) -> httpx.Response:
        body.setdefault("extension", self.slug)
        return httpx.post(f"{self.url}/api/ext-debug/sessions", json=body, headers=self.auth(who), timeout=15)

    def watch(self, who: str = "operator", last_event_id: str | None = None, **body: Any) -> SSEReader:
        resp = self.open(who, **body)
        assert resp.status_code == 201, resp.text
        headers = {"last-event-id": last_event_id} if last_event_id else {}
        reader = SSEReader(self.url + resp.json()["stream_url"], headers)
        self.readers.append(reader)
        assert reader.status == 200
        reader.expect("info", code="session_started")
        return reader

    def call(self, path: str, who: str = "viewer", **headers: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/ext/{self.slug}/{path.lstrip('/')}",
                         headers={**self.auth(who), **headers}, timeout=30)

    def audit_records(self, prefix: str) -> list[dict[str, Any]]:
        from sqlalchemy import text

        from audit.records import AuditEvent

        self.container.audit.append(AuditEvent(action="test.flush", outcome="success"))
        with self.container.db.engine.connect() as conn:
            rows = conn.execute(text("SELECT body FROM audit_record ORDER BY seq")).all()
        return [b for b in (json.loads(r[0]) for r in rows) if b["action"].startswith(prefix)]


@pytest.fixture(scope="session")
def debug_compiled_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("debug-compiled")


@pytest.fixture
def debug_settings(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Test-sized limits; tests add EXTGATE_DEBUG_REDIS_URL themselves when they want Redis."""
    env = {
        "EXTGATE_DEBUG_KEY_PREFIX": "dbgt" + uuid.uuid4().hex[:8],
        "EXTGATE_DEBUG_MAX_SESSION_S": "30",
        "EXTGATE_DEBUG_REVALIDATE_S": "0.5",
        "EXTGATE_DEBUG_HEARTBEAT_S": "1",
        "EXTGATE_DEBUG_READ_BLOCK_MS": "500",
        "EXTGATE_DEBUG_SOCKET_TIMEOUT_S": "2",
        "EXTGATE_DEBUG_RETRY_BACKOFF_S": "0.2",
        "EXTGATE_DEBUG_BREAKER_MIN_S": "0.2",
        "EXTGATE_DEBUG_BREAKER_MAX_S": "0.5",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("EXTGATE_DEBUG_REDIS_URL", raising=False)
    monkeypatch.delenv("EXTGATE_REDIS_URL", raising=False)
    return env


@pytest.fixture
def make_debug_env(tmp_path: Path, debug_compiled_cache: Path, debug_settings: dict[str, str],
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    opened: list[DebugEnv] = []

    def factory(redis_url: str | None = None, **env: str) -> DebugEnv:
        if redis_url:
            monkeypatch.setenv("EXTGATE_DEBUG_REDIS_URL", redis_url)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        container = make_container(tmp_path, f"sqlite:///{tmp_path / 'extgate.db'}")
        slug, ext_id, _ = publish_guest(container, tmp_path, "demo", debug_compiled_cache)
        caps = guest_manifest("demo")["capabilities"]
        install_id = install_for(container, TENANT, slug, caps)
        other = install_for(container, OTHER, slug, caps)
        plain = install_for(container, NO_DEBUG_TENANT, slug, [c for c in caps if c != "cap:debug.logs"])
        server = ServerThread(create_app(container=container))
        server.start()
        tokens = {
            "operator": token(container, TENANT, "operator", sub="op-1"),
            "viewer": token(container, TENANT, "viewer", sub="viewer-1"),
            "admin": token(container, TENANT, "admin", sub="admin-1"),
            "other-operator": token(container, OTHER, "operator", sub="op-2"),
            "plain-operator": token(container, NO_DEBUG_TENANT, "operator", sub="op-3"),
            "platform": token(container, "platform", "platform-admin", sub="root-1"),
        }
        env_obj = DebugEnv(container, server, slug, ext_id, install_id, other, plain, tokens)
        opened.append(env_obj)
        return env_obj

    yield factory
    for e in opened:
        for r in e.readers:
            r.close()
        e.server.stop()
        e.container.close()


@dataclass
class PrivateRedis:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    r = PrivateRedis(free_port())
    r.start()
    try:
        yield r
    finally:
        r.stop()


# The runner suite's session fixtures (compiled demo guest, keyring), reused here.
from tests.runner.conftest import compiled_dir, demo_hash, keyring  # noqa: E402, F401
