"""Queries the core needs: chats and their settings, the kept window of messages, turns."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from botkit.core.events import ChatKey
from botkit.core.settings import ChatSettings
from botkit.store.models import ChatRow, MessageRow

__all__ = ["ChatRecord", "NewMessage", "Repository", "StoredMessage"]

_SETTING_COLUMNS = ChatSettings.names()


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """A chat as the core sees it: its id, key, setting overrides and trimming position."""

    id: int
    key: ChatKey
    overrides: dict[str, Any]
    window_start_id: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message read back from the store."""

    id: int
    role: str
    author: str | None
    content: str
    token_count: int
    token_model: str
    status: str
    seed: int | None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message about to be stored."""

    role: str
    author: str | None
    content: str
    token_count: int
    token_model: str
    status: str
    seed: int | None = None


def _record(row: ChatRow) -> ChatRecord:
    return ChatRecord(
        id=row.id,
        key=ChatKey(row.platform, row.chat_key),
        overrides={name: getattr(row, name) for name in _SETTING_COLUMNS},
        window_start_id=row.window_start_id,
    )


def _stored(row: MessageRow) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        role=row.role,
        author=row.author,
        content=row.content,
        token_count=row.token_count,
        token_model=row.token_model,
        status=row.status,
        seed=row.seed,
    )


class Repository:
    """All reads and writes of chats and messages."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # One writer at a time: SQLite fails a deferred read-then-write transaction at once
        # when another connection holds the write lock, whatever the busy timeout.
        self._write_lock = asyncio.Lock()

    def _session(self) -> AsyncSession:
        return self._sessions()

    async def chat(self, key: ChatKey) -> ChatRecord:
        """The chat for key, created on first use."""
        async with self._session() as session:
            row = await self._find(session, key)
            if row is not None:
                return _record(row)
        async with self._write_lock, self._session() as session, session.begin():
            row = await self._find(session, key)
            if row is None:
                row = ChatRow(platform=key.platform, chat_key=key.chat_id, window_start_id=0)
                session.add(row)
                await session.flush()
            return _record(row)

    @staticmethod
    async def _find(session: AsyncSession, key: ChatKey) -> ChatRow | None:
        result = await session.execute(
            select(ChatRow).where(ChatRow.platform == key.platform, ChatRow.chat_key == key.chat_id)
        )
        return result.scalar_one_or_none()

    async def set_setting(self, chat_id: int, name: str, value: Any) -> None:
        """Override one setting for a chat; None returns it to the config default."""
        if name not in _SETTING_COLUMNS:
            raise KeyError(name)
        async with self._write_lock, self._session() as session, session.begin():
            await session.execute(
                update(ChatRow).where(ChatRow.id == chat_id).values({name: value})
            )

    async def window(self, chat_id: int, start_id: int) -> list[StoredMessage]:
        """Messages from start_id on, oldest first: one range scan of (chat_id, id)."""
        async with self._session() as session:
            result = await session.execute(
                select(MessageRow)
                .where(MessageRow.chat_id == chat_id, MessageRow.id >= start_id)
                .order_by(MessageRow.id)
            )
            return [_stored(row) for row in result.scalars()]

    async def count_before(self, chat_id: int, start_id: int) -> int:
        """How many stored messages lie before start_id (no longer sent to the model)."""
        async with self._session() as session:
            result = await session.execute(
                select(func.count())
                .select_from(MessageRow)
                .where(MessageRow.chat_id == chat_id, MessageRow.id < start_id)
            )
            return int(result.scalar_one())

    async def set_window_start(self, chat_id: int, start_id: int) -> None:
        """Move the trimming position of a chat."""
        async with self._write_lock, self._session() as session, session.begin():
            await session.execute(
                update(ChatRow).where(ChatRow.id == chat_id).values(window_start_id=start_id)
            )

    async def recount(self, updates: Sequence[tuple[int, int, str]]) -> None:
        """Store new token counts: (message id, count, tokenizer id)."""
        if not updates:
            return
        async with self._write_lock, self._session() as session, session.begin():
            for message_id, count, model in updates:
                await session.execute(
                    update(MessageRow)
                    .where(MessageRow.id == message_id)
                    .values(token_count=count, token_model=model)
                )

    async def add_messages(self, chat_id: int, messages: Sequence[NewMessage]) -> list[int]:
        """Store messages in one transaction (a turn is all or nothing); returns their ids."""
        async with self._write_lock, self._session() as session, session.begin():
            rows = [MessageRow(chat_id=chat_id, **asdict(m)) for m in messages]
            session.add_all(rows)
            await session.flush()
            await session.execute(
                update(ChatRow).where(ChatRow.id == chat_id).values(updated_at=func.now())
            )
            return [row.id for row in rows]

    async def clear_history(self, chat_id: int) -> int:
        """Forget a chat's messages (its settings stay); returns how many were deleted."""
        async with self._write_lock, self._session() as session, session.begin():
            result = await session.execute(delete(MessageRow).where(MessageRow.chat_id == chat_id))
            await session.execute(
                update(ChatRow).where(ChatRow.id == chat_id).values(window_start_id=0)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def delete_messages(self, chat_id: int, message_ids: Sequence[int]) -> None:
        """Delete some of a chat's messages (e.g. the turn /retry replaces)."""
        async with self._write_lock, self._session() as session, session.begin():
            await session.execute(
                delete(MessageRow).where(
                    MessageRow.chat_id == chat_id, MessageRow.id.in_(list(message_ids))
                )
            )

    async def last_turn(self, chat_id: int) -> tuple[StoredMessage, StoredMessage] | None:
        """The newest user message and the reply after it, if the chat ends with a reply."""
        async with self._session() as session:
            result = await session.execute(
                select(MessageRow)
                .where(MessageRow.chat_id == chat_id)
                .order_by(MessageRow.id.desc())
                .limit(2)
            )
            rows = [_stored(r) for r in result.scalars()]
        if len(rows) == 2 and rows[0].role == "assistant" and rows[1].role == "user":
            return rows[1], rows[0]
        return None

    async def last_reply(self, chat_id: int) -> StoredMessage | None:
        """The newest assistant message of a chat."""
        async with self._session() as session:
            result = await session.execute(
                select(MessageRow)
                .where(MessageRow.chat_id == chat_id, MessageRow.role == "assistant")
                .order_by(MessageRow.id.desc())
                .limit(1)
            )
            row = result.scalar_one_or_none()
            return _stored(row) if row is not None else None
