"""Plugins' data: JSON values under keys, per plugin (by the name botkit loaded it as) and per
chat (or in the plugin's own space), within a quota of values and bytes per plugin and chat.

Every write is one transaction that first takes the key (PostgreSQL: the row's lock; SQLite:
the database's write lock), then reads, checks and writes: two updates of one key, from one
process or two, follow each other and neither is lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from botkit.store.models import PLUGIN_DATA
from botkit.store.writer import Writer

__all__ = ["MAX_VALUE", "OWN_SPACE", "PluginData", "Quota", "QuotaExceeded", "json_size"]


MAX_VALUE = 64 * 1024  # bytes of JSON in one value
OWN_SPACE = 0  # the chat_id of a plugin's own values (no chat has id 0)


@dataclass(frozen=True, slots=True)
class Quota:
    """What one plugin may keep in one chat (and in its own space)."""

    rows: int
    bytes: int


class QuotaExceeded(Exception):
    """A write would take a plugin over its quota in a chat; nothing was written."""

    def __init__(self, what: str, kept: int, limit: int) -> None:
        super().__init__(f"{what}: {kept:,} of at most {limit:,}")
        self.what = what  # "values" or "bytes"
        self.kept = kept  # what the plugin would keep there with this write
        self.limit = limit


def json_size(value: Any) -> int:
    """The bytes of value as JSON; ValueError naming the problem if it is not JSON."""
    try:
        return len(json.dumps(value, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"plugin values must be JSON: {exc}") from None


class PluginData:
    """Reads and writes of plugin_data, on the repository's single writer."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def get(self, plugin: str, chat_id: int, key: str) -> Any:
        """The value stored under key (None if nothing)."""
        rows = await self._writer.read(
            select(PLUGIN_DATA.c.value).where(*_where(plugin, chat_id, key))
        )
        return rows[0][0] if rows else None

    async def update(
        self, plugin: str, chat_id: int, key: str, change: Callable[[Any], Any], quota: Quota
    ) -> Any:
        """Replace key's value by change(current value, None if none) in one transaction;
        None deletes the key. Returns the new value. QuotaExceeded (nothing written) if it
        would take the plugin over quota in that chat; ValueError for a value that is not
        JSON or is over MAX_VALUE bytes."""
        where = _where(plugin, chat_id, key)
        async with self._writer.transaction() as conn:
            # First a write: it takes the key before anything is read (see the docstring). A
            # new key gets a placeholder, gone again if the transaction fails.
            taken = await conn.execute(
                self._insert_absent().values(
                    plugin=plugin, chat_id=chat_id, key=key, value=None, size=0,
                    updated_at=datetime.now(UTC),
                )
            )  # fmt: skip
            is_new = taken.rowcount == 1
            current, old_size = (
                await conn.execute(
                    select(PLUGIN_DATA.c.value, PLUGIN_DATA.c.size).where(*where).with_for_update()
                )
            ).one()
            value = change(None if is_new else current)
            if value is None:
                await conn.execute(delete(PLUGIN_DATA).where(*where))
                return None
            size = json_size(value)
            if size > MAX_VALUE:
                raise ValueError(
                    f"a plugin value is at most {MAX_VALUE:,} bytes of JSON ({size:,})"
                )
            rows, total = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(PLUGIN_DATA.c.size), 0)).where(
                        PLUGIN_DATA.c.plugin == plugin, PLUGIN_DATA.c.chat_id == chat_id
                    )
                )
            ).one()
            # Only what grows is refused: after the quota was lowered, a plugin over it may
            # still shrink and rewrite what it keeps.
            if is_new and rows > quota.rows:
                raise QuotaExceeded("values", rows, quota.rows)
            total += size - old_size
            if size > old_size and total > quota.bytes:
                raise QuotaExceeded("bytes", total, quota.bytes)
            await conn.execute(
                update(PLUGIN_DATA)
                .where(*where)
                .values(value=value, size=size, updated_at=datetime.now(UTC))
            )
        return value

    def _insert_absent(self) -> Any:
        """INSERT … ON CONFLICT DO NOTHING in the database's dialect."""
        dialect = postgresql if self._writer.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(PLUGIN_DATA).on_conflict_do_nothing(
            index_elements=["plugin", "chat_id", "key"]
        )


def _where(plugin: str, chat_id: int, key: str) -> tuple[Any, ...]:
    return (
        PLUGIN_DATA.c.plugin == plugin,
        PLUGIN_DATA.c.chat_id == chat_id,
        PLUGIN_DATA.c.key == key,
    )
