"""Every response carries our own request id; a client-sent one is replaced, never trusted."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from tests.support import make_container


def test_request_id_is_ours_and_unique(tmp_path: Path) -> None:
    container = make_container(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with TestClient(create_app(container=container)) as client:
            ids = set()
            for path in ("/healthz", "/api/admin/tenants/acme/installs", "/nope"):
                r = client.get(path, headers={"x-request-id": "client-chosen"})
                assert r.headers.get_list("x-request-id") == [r.headers["x-request-id"]]
                ids.add(r.headers["x-request-id"])
            assert "client-chosen" not in ids and len(ids) == 3
            assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    finally:
        container.close()
