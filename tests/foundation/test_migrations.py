"""Migrations produce exactly the tables and columns the models declare (no drift)."""

from sqlalchemy import inspect
from sqlmodel import SQLModel

import service.db.models  # noqa: F401 - registers the tables
from runner.storage.sql import metadata as kv_metadata
from service.db import create_database
from service.db.migrate import current_revision, head_revision, upgrade


def test_migrated_schema_matches_models(database_url):
    db = create_database(database_url)
    try:
        upgrade(db.engine)
        upgrade(db.engine)  # idempotent
        assert current_revision(db.engine) == head_revision(db.engine)
        insp = inspect(db.engine)
        for table in [*SQLModel.metadata.sorted_tables, *kv_metadata.sorted_tables]:
            columns = {c["name"]: c for c in insp.get_columns(table.name)}
            assert set(columns) == {c.name for c in table.columns}, table.name
            for col in table.columns:
                assert columns[col.name]["nullable"] == col.nullable, (table.name, col.name)
    finally:
        db.dispose()


def test_timestamps_come_back_timezone_aware(tmp_path, database_url):
    from service.registry import publishing
    from service.registry.bundles import load_bundle_path
    from tests.support import make_container, write_bundle

    c = make_container(tmp_path, database_url)
    try:
        bundle = load_bundle_path(write_bundle(tmp_path / "b"))
        publishing.publish_bundle(c.db, c.bundle_store, bundle, signature=None,
                                  signature_policy=c.signature_policy, validate_component=None)
        with c.db.session() as s:
            ext = publishing.list_extensions(s)[0][0]
        assert ext.created_at.tzinfo is not None and ext.created_at.utcoffset().total_seconds() == 0
    finally:
        c.close()


def test_sqlite_reader_does_not_wait_for_the_write_lock(tmp_path):  # type: ignore[no-untyped-def]
    """Writers take the lock at BEGIN (IMMEDIATE); `Database.reader` reads a WAL snapshot
    beside an open write transaction instead of queueing behind it."""
    import time

    from sqlalchemy import text

    from service.db import create_database

    db = create_database(f"sqlite:///{tmp_path / 'r.db'}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with db.engine.connect() as writer:
        writer.execute(text("INSERT INTO t VALUES (2)"))  # BEGIN IMMEDIATE: holds the write lock
        started = time.monotonic()
        with db.reader.connect() as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 1  # the committed snapshot
        assert time.monotonic() - started < 5  # a writer-style BEGIN would wait busy_timeout (30 s)
        writer.commit()
    with db.reader.connect() as reader:
        assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 2
    db.dispose()


def test_upgrade_after_a_runner_created_its_kv_table(tmp_path):  # type: ignore[no-untyped-def]
    """`extgate runner serve` started first on a shared embedded SQLite file creates the KV
    table itself; the service's migrations must then adopt it, not fail."""
    from runner.storage.sql import SqlKVStore

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    SqlKVStore(url, create_tables=True)
    db = create_database(url)
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision(db.engine)
    assert "extgate_kv_entries" in inspect(db.engine).get_table_names()
    db.dispose()


def test_schema_state_for_readiness(tmp_path):  # type: ignore[no-untyped-def]
    """/readyz: a database behind this code is not ready; one a newer release already
    migrated is (rolling upgrades keep the old pods serving)."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from service.app import create_app
    from service.db.migrate import schema_state
    from tests.support import make_container

    db = create_database(f"sqlite:///{tmp_path / 's.db'}")
    assert schema_state(db.engine) == "behind"  # never migrated
    upgrade(db.engine, "0002_audit")
    assert schema_state(db.engine) == "behind"
    upgrade(db.engine)
    assert schema_state(db.engine) == "current"
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_a_newer_release'"))
    assert schema_state(db.engine) == "ahead"
    db.dispose()

    container = make_container(tmp_path / "c", f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with TestClient(create_app(container=container)) as client:
            assert client.get("/readyz").json()["checks"]["database"]["schema"] == "current"
            with container.db.engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = '0002_audit'"))
            behind = client.get("/readyz")
            assert behind.status_code == 503 and "migrations pending" in behind.json()["checks"]["database"]["reason"]
            with container.db.engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_a_newer_release'"))
            assert client.get("/readyz").status_code == 200
    finally:
        container.close()
