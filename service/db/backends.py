"""Engine construction per backend.

SQLite: WAL so readers don't block the writer, a busy timeout instead of immediate
`database is locked`, foreign keys on. PostgreSQL: a pre-pinged pool so a restarted
server doesn't surface as a failed request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Pool sized for the request thread pool: connections that overflow it are closed on
    # return and reopened (with their PRAGMAs) on the next burst.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_size=20, max_overflow=40)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, issue BEGIN (so BEGIN IMMEDIATE is possible).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers serialize at BEGIN instead of failing on lock upgrade mid-transaction.
        # Read-only work (Database.reader) issues no BEGIN at all: each of its statements
        # reads its own WAL snapshot in autocommit, taking no write lock and saving a round
        # trip (its users run single-statement lookups).
        if not conn.get_execution_options().get("extgate_read_only"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def engine_for_url(url: str) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        return _postgres_engine(url)
    raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql+psycopg)")
