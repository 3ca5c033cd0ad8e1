"""Apply alembic migrations programmatically (`extgate db upgrade`, embedded auto-upgrade)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_config(engine)).get_current_head()


def schema_state(engine: Engine) -> str:
    """`current` (at this code's head), `ahead` (a newer release already migrated it: its
    migrations are written to keep the previous release working during a rolling upgrade)
    or `behind` (migrations of this code are pending; also a database never migrated)."""
    current = current_revision(engine)
    script = ScriptDirectory.from_config(_config(engine))
    if current == script.get_current_head():
        return "current"
    if current is None:
        return "behind"
    try:
        script.get_revision(current)
    except Exception:  # noqa: BLE001 - a revision this code does not know: newer than us
        return "ahead"
    return "behind"

