"""Shared fixtures: real databases and Redis.

`database_url` is parametrized over SQLite and PostgreSQL. PostgreSQL tests get a fresh
database each (created and dropped here), so parallel suites never share state. With
EXTGATE_REQUIRE_SERVICES=1 (CI) an unreachable PostgreSQL or Redis fails the test
instead of skipping it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("EXTGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EXTGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("EXTGATE_REQUIRE_SERVICES") == "1"

# The per-user default data directory ($XDG_DATA_HOME/extgate) points into a temp dir for the
# whole run (subprocesses inherit it): tests never write into the real home directory. Tests
# that need their own store set EXTGATE_DATA_DIR.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="extgate-tests-xdg-")


def _unavailable(what: str, exc: Exception) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} unreachable but EXTGATE_REQUIRE_SERVICES=1: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'extgate.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for one test."""
    name = "extgate_t_" + uuid.uuid4().hex[:16]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "unavailable"
        admin.dispose()
        _unavailable("PostgreSQL", exc)
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test against both backends."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable("Redis", exc)
    finally:
        client.close()
    return REDIS_URL
