"""Database engine set-up (SQLite pragmas) and the Alembic migration check/upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = [
    "NotMigrated",
    "create_engine",
    "ensure_migrated",
    "migrations_dir",
    "redact_url",
    "upgrade",
]


class NotMigrated(Exception):
    """The database schema is not at the revision this botkit needs."""


def migrations_dir() -> Path:
    """The Alembic scripts: packaged inside the wheel, or the repository's migrations/."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("botkit's migrations folder is missing from this installation")


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Per-connection settings (wire-notes): WAL so readers never block the writer,
    # NORMAL sync (committed turns survive a crash), foreign keys for ON DELETE CASCADE.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for url, with botkit's SQLite connection settings."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade_sync(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


def _state_sync(connection: Connection) -> tuple[str | None, str | None, bool]:
    current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(_alembic_config(connection)).get_current_head()
    empty = not inspect(connection).get_table_names()
    return current, head, empty


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every pending migration."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade_sync)


async def ensure_migrated(engine: AsyncEngine, *, auto_migrate_new: bool) -> bool:
    """Check the schema is current; migrate an empty database if allowed. True if migrated."""
    async with engine.connect() as conn:
        current, head, empty = await conn.run_sync(_state_sync)
    if current == head:
        return False
    if empty and auto_migrate_new:
        await upgrade(engine)
        return True
    where = redact_url(str(engine.url.render_as_string(hide_password=False)))
    found = "no botkit schema" if current is None else f"schema revision {current}"
    raise NotMigrated(
        f"the database {where} has {found}, this botkit needs revision {head}. "
        "Run: botkit db upgrade --config <your config file>"
    )
