"""The `Database` handle: an SQLAlchemy engine plus session factory.

Backends (SQLite for the embedded default, PostgreSQL in production) differ only in how
the engine is created and tuned; see `service.db.backends`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlmodel import Session

from service.db.backends import engine_for_url

# Execution option marking a read-only unit of work (see `Database.reader`).
READ_ONLY = "extgate_read_only"


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Same pool; on SQLite its statements run in autocommit (no BEGIN), so hot-path
        # single-statement reads (the gateway's install lookups) run beside writers under
        # WAL instead of queueing for the write lock that BEGIN IMMEDIATE takes.
        self.reader: Engine = engine.execution_options(**{READ_ONLY: True})

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def create_database(url: str) -> Database:
    return Database(engine_for_url(url))
