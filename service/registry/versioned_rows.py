"""Compare-and-set writes for per-install rows (config, secrets).

Read the row with its `revision`, compute the new state, then
`UPDATE ... WHERE revision = <read revision>`. Zero rows updated means another writer
got there first: re-read and re-apply. This gives no lost updates on SQLite and on
PostgreSQL with several gateway replicas, without dialect-specific locking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from service.db import Database
from service.errors import Conflict

Row = TypeVar("Row", bound=SQLModel)
MAX_ATTEMPTS = 8


def compare_and_set(
    db: Database,
    model: type[Row],
    key: str,
    compute: Callable[[Session, Row | None], dict[str, Any] | None],
    *,
    on_write: Callable[[Session, Row | None], None] | None = None,
) -> Row | None:
    """Apply `compute(session, current_row) -> new column values` (None = delete the row).

    `on_write(session, new_row)` runs in the same transaction after a successful write
    (its audit record); if it raises, the write is rolled back."""
    table = model.__table__  # type: ignore[attr-defined]
    for _ in range(MAX_ATTEMPTS):
        try:
            with db.session() as session:
                current = session.get(model, key)
                values = compute(session, current)
                if current is None:
                    if values is None:
                        return None
                    row = model(**values)
                    session.add(row)
                    session.flush()
                    if on_write is not None:
                        on_write(session, row)
                    return row
                revision = current.revision  # type: ignore[attr-defined]
                if values is None:
                    result = session.execute(
                        table.delete().where(table.c.install_id == key, table.c.revision == revision)
                    )
                else:
                    result = session.execute(
                        update(table)
                        .where(table.c.install_id == key, table.c.revision == revision)
                        .values(**values, revision=revision + 1)
                    )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    session.expire_all()
                    written = session.get(model, key) if values is not None else None
                    if on_write is not None:
                        on_write(session, written)
                    return written
        except IntegrityError:
            continue  # a concurrent first insert; retry as an update
    raise Conflict("too many concurrent writes to this install; retry", code="concurrent_update")
