"""Fixtures for the audit suite: an engine with the audit schema, a signer, a log factory, tampering."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from audit.note import NoteSigner
from audit.records import Actor, AuditEvent
from audit.schema import APPEND_ONLY_TABLES, create_schema, guard_statements
from audit.sql import SqlAuditLog
from service.db.backends import engine_for_url

ORIGIN = "test.example/audit"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = engine_for_url(database_url)
    create_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture
def make_log(engine: Engine, signer: NoteSigner, checkpoint_dir: Path) -> Iterator[Callable[..., SqlAuditLog]]:
    logs: list[SqlAuditLog] = []

    def factory(**kwargs: Any) -> SqlAuditLog:
        opts: dict[str, Any] = {
            "origin": ORIGIN,
            "signer": signer,
            "checkpoint_dir": checkpoint_dir,
            "checkpoint_every": 1_000_000,
            "checkpoint_interval": 3600,
        }
        opts.update(kwargs)
        log = SqlAuditLog(engine, **opts)
        logs.append(log)
        return log

    yield factory
    for log in logs:
        log.close(final_checkpoint=False)


def event(i: int, tenant: str | None = "t1", **kw: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "action": "gateway.decision",
        "outcome": "allow" if i % 3 else "deny",
        "tenant_id": tenant,
        "actor": Actor(f"user-{i % 5}", tenant=tenant, roles=("viewer",)),
        "resource": f"install:inst-{i % 7}/endpoint:GET /items",
        "policy_ids": ("policy0",),
        "policy_revision": "rev-1",
        "request_id": f"req-{i}",
        "details": {"n": i},
    }
    base.update(kw)
    return AuditEvent(**base)


def tamper(engine: Engine, *statements: str) -> None:
    """Run statements the way a DBA would: disable the guards, edit, re-enable them."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in (*APPEND_ONLY_TABLES, "audit_head"):
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            for stmt in statements:
                conn.exec_driver_sql(stmt)
            for stmt in guard_statements("postgresql"):  # recreate, ENABLE ALWAYS
                conn.execute(sa.text(stmt))
        else:
            names = [r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'")]
            for name in names:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            for stmt in statements:
                conn.exec_driver_sql(stmt)
            for stmt in guard_statements("sqlite"):
                conn.execute(sa.text(stmt))
