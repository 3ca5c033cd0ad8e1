"""Every dependency outage is a 503 on every endpoint (issue 17, item 5).

Each dependency is reached through a TCP relay that the test then shuts, so the service
meets a real dead port — refused connections, reset pooled ones — not a mocked error.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.registry.bundles import pack_directory
from tests.support import make_container, token, write_bundle


class Relay:
    """Forwards a local port to `target`; `kill()` closes the port and every open connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._dead = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._dead:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def kill(self) -> None:
        with self._lock:
            self._dead = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def dead_database(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, Any]]:
    """A service on PostgreSQL whose database then goes away."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    container = make_container(tmp_path, relayed)
    client = TestClient(create_app(container=container), raise_server_exceptions=False)
    archive = pack_directory(write_bundle(tmp_path / "bundle"))
    headers = {
        "platform": {"authorization": "Bearer " + token(container, "ops", "platform-admin")},
        "admin": {"authorization": "Bearer " + token(container, "t1", "admin")},
        "auditor": {"authorization": "Bearer " + token(container, "t1", "admin")},
        "operator": {"authorization": "Bearer " + token(container, "t1", "operator", "admin")},
    }
    relay.kill()
    yield {"client": client, "headers": headers, "archive": archive}
    client.close()
    container.close()


DATABASE_DOWN = [
    ("GET", "/api/admin/extensions", "admin", None),
    ("GET", "/api/admin/tenants/t1/installs", "admin", None),
    ("GET", "/api/audit/records", "auditor", None),
    ("GET", "/api/audit/checkpoints/latest", "auditor", None),
    ("POST", "/api/audit/verify", "auditor", {}),
    ("POST", "/api/admin/extensions", "platform", "archive"),
    ("POST", "/api/ext-debug/sessions", "operator",
     {"extension": "acme.com.acme.tickets", "justification": "investigating a customer ticket"}),
    ("GET", "/api/ext/acme.com.acme.tickets/hello", "admin", None),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("method", "path", "who", "body"), DATABASE_DOWN,
                         ids=[f"{m} {p}" for m, p, _, _ in DATABASE_DOWN])
def test_database_outage_is_503(dead_database: dict[str, Any], method: str, path: str, who: str, body: Any) -> None:
    """Issue 17 (5): with the database down these answered 500 `internal_error`."""
    client: TestClient = dead_database["client"]
    kwargs: dict[str, Any] = {"headers": dead_database["headers"][who]}
    if body == "archive":
        kwargs["content"] = dead_database["archive"]
    elif body is not None:
        kwargs["json"] = body
    r = client.request(method, path, **kwargs)
    assert r.status_code == 503, (r.status_code, r.text)
    doc = r.json()
    assert doc["error"] in {"service_unavailable", "access_policy_unavailable", "audit_unavailable",
                            "debug_unavailable"}, doc
    assert "127.0.0.1" not in r.text and "psycopg" not in r.text.lower()  # no dependency text leaks


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_outage_is_503(tmp_path: Path, sqlite_url: str) -> None:
    """Rate limits, idempotency and debug sessions all live in Redis when it is configured."""
    container = make_container(tmp_path, sqlite_url, redis_url=f"redis://127.0.0.1:{_dead_port()}/0")
    try:
        client = TestClient(create_app(container=container), raise_server_exceptions=False)
        operator = {"authorization": "Bearer " + token(container, "t1", "operator", "admin")}
        r = client.get("/api/ext/any.thing/hello", headers=operator)
        assert r.status_code in (404, 503), r.text  # no install: refused before Redis is needed
        r = client.post("/api/ext-debug/sessions", headers=operator,
                        json={"extension": "acme.com.acme.tickets", "justification": "investigating a ticket"})
        assert r.status_code in (404, 503), r.text
        assert r.status_code != 500
    finally:
        container.close()


def test_outage_classification_follows_the_exception_chain() -> None:
    import httpx
    import redis.exceptions
    import sqlalchemy.exc

    from audit.log import AuditUnavailableError
    from service.api.errors import DependencyUnavailable, dependency_outage

    def chained(outer: Exception, inner: Exception) -> Exception:
        try:
            try:
                raise inner
            except Exception as exc:
                raise outer from exc
        except Exception as exc:  # noqa: BLE001
            return exc

    assert dependency_outage(sqlalchemy.exc.OperationalError("select", {}, Exception("refused"))) == "database"
    assert dependency_outage(redis.exceptions.ConnectionError()) == "redis"
    assert dependency_outage(httpx.ConnectError("refused")) == "runner"
    assert dependency_outage(AuditUnavailableError("down")) == "audit"
    assert dependency_outage(DependencyUnavailable("redis")) == "redis"
    assert dependency_outage(chained(RuntimeError("wrapped"), redis.exceptions.TimeoutError())) == "redis"
    assert dependency_outage(ValueError("a bug")) is None
    assert dependency_outage(sqlalchemy.exc.IntegrityError("insert", {}, Exception("dup"))) is None
