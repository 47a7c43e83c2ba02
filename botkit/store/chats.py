"""Chats: the row of each conversation, with its setting overrides and trimming position."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import insert, select, update

from botkit.core.events import ChatKey
from botkit.core.settings import ChatSettings, valid_overrides
from botkit.store.caches import Caches
from botkit.store.models import CHATS, utc_now
from botkit.store.records import ChatRecord
from botkit.store.writer import Writer

__all__ = ["Chats"]

_SETTINGS = frozenset(ChatSettings.model_fields)


def _record(row: Any) -> ChatRecord:
    return ChatRecord(
        id=row.id,
        key=ChatKey(row.platform, row.chat_key),
        overrides=valid_overrides(row.overrides),
        window_start_id=row.window_start_id,
    )


class Chats:
    """Reads and writes of the chats table, through the chat cache."""

    def __init__(self, writer: Writer, caches: Caches) -> None:
        self._writer = writer
        self._caches = caches

    async def chat(self, key: ChatKey) -> ChatRecord:
        """The chat for key, created on first use."""
        cached = self._caches.chat(key)
        if cached is not None:
            return cached
        query = select(CHATS).where(
            CHATS.c.platform == key.platform, CHATS.c.chat_key == key.platform_id
        )
        rows = await self._writer.read(query)
        if rows:
            return self._caches.keep_chat(_record(rows[0]))
        async with self._writer.transaction() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                now = utc_now()
                await conn.execute(
                    insert(CHATS).values(
                        platform=key.platform, chat_key=key.platform_id, overrides={},
                        window_start_id=0, created_at=now, updated_at=now,
                    )
                )  # fmt: skip
                row = (await conn.execute(query)).one()
                self._caches.keep_window(row.id, 0, [])  # a new chat: its window is empty
            return self._caches.keep_chat(_record(row))

    async def find(self, key: ChatKey) -> ChatRecord | None:
        """The chat for key if it exists (never creates it)."""
        query = select(CHATS).where(
            CHATS.c.platform == key.platform, CHATS.c.chat_key == key.platform_id
        )
        rows = await self._writer.read(query)
        return _record(rows[0]) if rows else None

    async def keys(self) -> dict[int, ChatKey]:
        """Every chat's key by its id, oldest first."""
        rows = await self._writer.read(
            select(CHATS.c.id, CHATS.c.platform, CHATS.c.chat_key).order_by(CHATS.c.id)
        )
        return {int(row.id): ChatKey(row.platform, row.chat_key) for row in rows}

    async def set_setting(self, chat_id: int, name: str, value: Any) -> None:
        """Override one setting for a chat (validated here); None returns it to the config
        default. The overrides are one JSON object: a new option needs no migration."""
        if name not in _SETTINGS:
            raise KeyError(name)
        if value is not None:
            ChatSettings.model_validate({name: value})  # raises ValidationError if out of range
        async with self._writer.transaction() as conn:
            stored = (
                await conn.execute(select(CHATS.c.overrides).where(CHATS.c.id == chat_id))
            ).scalar_one()
            overrides = {k: v for k, v in valid_overrides(stored).items() if k != name}
            if value is not None:
                overrides[name] = value
            await conn.execute(
                update(CHATS)
                .where(CHATS.c.id == chat_id)
                .values(overrides=overrides, updated_at=utc_now())
            )
        self._caches.change_chat(chat_id, lambda record: replace(record, overrides=overrides))

    async def set_window_start(self, chat_id: int, start_id: int) -> None:
        """Move the trimming position of a chat forward (never back: trimmed stays trimmed)."""
        async with self._writer.transaction() as conn:
            await conn.execute(
                update(CHATS)
                .where(CHATS.c.id == chat_id, CHATS.c.window_start_id < start_id)
                .values(window_start_id=start_id)
            )
        self._caches.change_chat(
            chat_id,
            lambda record: replace(record, window_start_id=max(record.window_start_id, start_id)),
        )
