"""A chat's messages outside the turn's own writes (botkit.store.turns): the kept window the
prompt is built from, token recounts, the last turn and reply, /retry's alternatives, clearing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from botkit.backends.base import Role
from botkit.store.caches import Caches
from botkit.store.guard import OwnerGuard
from botkit.store.images import Images, collect_images, link_images
from botkit.store.models import MESSAGE_IMAGES, MESSAGES, MessageStatus, utc_now
from botkit.store.records import NewMessage, StoredMessage
from botkit.store.writer import Writer

__all__ = ["Messages"]

# A StoredMessage's columns, in its fields' order.
_COLUMNS = (
    MESSAGES.c.id,
    MESSAGES.c.role,
    MESSAGES.c.author,
    MESSAGES.c.content,
    MESSAGES.c.token_count,
    MESSAGES.c.tokenizer_id,
    MESSAGES.c.status,
    MESSAGES.c.seed,
    MESSAGES.c.tool,
    MESSAGES.c.images,
)


# The enums by value: a dict lookup costs a twentieth of Role(value), read for every row.
_ROLES = {role.value: role for role in Role}
_STATUSES = {status.value: status for status in MessageStatus}
_ROWS_PER_INSERT = 1000  # x 14 columns: well under PostgreSQL's 32,767 parameters

# What a reply answers: a question, or (after a tool round) the tools' results.
_ASKED = (Role.USER, Role.TOOL)


def _stored(row: Any) -> StoredMessage:
    """A row of _COLUMNS as a StoredMessage."""
    row_id, role, author, content, token_count, tokenizer_id, status, seed, tool, images = row
    return StoredMessage(
        row_id, _ROLES[role], author, content, token_count, tokenizer_id, _STATUSES[status], seed,
        tool, tuple(images) if images else (),
    )  # fmt: skip


class Messages:
    """Reads and writes of a chat's messages, through the window cache."""

    def __init__(self, writer: Writer, caches: Caches, guard: OwnerGuard, images: Images) -> None:
        self._writer = writer
        self._caches = caches
        self._guard = guard
        self._images = images

    async def _messages(self, query: Any) -> list[StoredMessage]:
        return [_stored(row) for row in await self._writer.read(query)]

    async def window(self, chat_id: int, start_id: int) -> list[StoredMessage]:
        """Messages from start_id on, oldest first: one range scan of (chat_id, id)."""
        cached = self._caches.window(chat_id, start_id)
        if cached is not None:
            return cached
        messages = await self._messages(
            select(*_COLUMNS)
            .where(
                MESSAGES.c.chat_id == chat_id,
                MESSAGES.c.id >= start_id,
                MESSAGES.c.replaces.is_(None),  # alternatives and retries in progress
            )
            .order_by(MESSAGES.c.id)
        )
        self._caches.keep_window(chat_id, start_id, messages)
        return list(messages)

    async def count_before(self, chat_id: int, start_id: int) -> int:
        """How many stored messages lie before start_id (no longer sent to the model)."""
        rows = await self._writer.read(
            select(func.count())
            .select_from(MESSAGES)
            .where(MESSAGES.c.chat_id == chat_id, MESSAGES.c.id < start_id)
        )
        return int(rows[0][0])

    async def recount(self, updates: Sequence[tuple[int, int, str]]) -> None:
        """Store new token counts: (message id, count, tokenizer id)."""
        if not updates:
            return
        async with self._writer.transaction() as conn:
            for message_id, count, tokenizer_id in updates:
                await conn.execute(
                    update(MESSAGES)
                    .where(MESSAGES.c.id == message_id)
                    .values(token_count=count, tokenizer_id=tokenizer_id)
                )
        self._caches.clear_windows()

    async def add_messages(self, chat_id: int, messages: Sequence[NewMessage]) -> list[int]:
        """Store messages in one transaction (a turn is all or nothing); returns their ids."""
        now = utc_now()
        values = [{"chat_id": chat_id, "created_at": now, **m.columns()} for m in messages]
        ids: list[int] = []
        async with self._writer.transaction() as conn:
            # In slices: PostgreSQL's protocol takes at most 32,767 parameters a statement.
            for start in range(0, len(values), _ROWS_PER_INSERT):
                part = values[start : start + _ROWS_PER_INSERT]
                result = await conn.execute(insert(MESSAGES).values(part).returning(MESSAGES.c.id))
                # RETURNING's order is unspecified; one statement's ids increase with its rows.
                ids += sorted(int(row[0]) for row in result)
            await link_images(conn, ((i, m.images) for i, m in zip(ids, messages, strict=True)))
        if ids:
            self._guard.wrote(chat_id, max(ids))
        rows = self._caches.rows(chat_id)
        if rows is not None:
            rows.extend(m.stored(i) for i, m in zip(ids, messages, strict=True))
        return ids

    async def clear_history(self, chat_id: int) -> int:
        """Forget a chat's messages (its settings stay) and the pictures they carried that no
        other message carries, in one transaction; returns how many messages were deleted."""
        async with self._writer.transaction() as conn:
            carried = await conn.execute(
                select(MESSAGE_IMAGES.c.image_id)
                .distinct()
                .join(MESSAGES, MESSAGES.c.id == MESSAGE_IMAGES.c.message_id)
                .where(MESSAGES.c.chat_id == chat_id)
            )
            candidates = [int(i) for i in carried.scalars()]
            # Their links go with them (ON DELETE CASCADE).
            result = await conn.execute(delete(MESSAGES).where(MESSAGES.c.chat_id == chat_id))
            deleted = await collect_images(conn, candidates)
        self._caches.forget(chat_id)
        self._images.forget(deleted)
        return int(result.rowcount or 0)

    async def last_turn(self, chat_id: int) -> tuple[StoredMessage, StoredMessage] | None:
        """The newest user message and the reply after it, if the chat ends with a reply."""
        found = await self._messages(
            select(*_COLUMNS)
            .where(MESSAGES.c.chat_id == chat_id, MESSAGES.c.replaces.is_(None))
            .order_by(MESSAGES.c.id.desc())
            .limit(2)
        )
        if len(found) == 2 and found[0].role == Role.ASSISTANT and found[1].role in _ASKED:
            return found[1], found[0]
        return None

    async def last_reply(self, chat_id: int) -> StoredMessage | None:
        """The newest assistant message of a chat."""
        found = await self._messages(
            select(*_COLUMNS)
            .where(
                MESSAGES.c.chat_id == chat_id,
                MESSAGES.c.role == Role.ASSISTANT,
                MESSAGES.c.replaces.is_(None),
            )
            .order_by(MESSAGES.c.id.desc())
            .limit(1)
        )
        return found[0] if found else None

    async def last_stats(self, chat_id: int) -> dict[str, Any] | None:
        """The figures of the chat's newest finished reply (None: it has none, or no reply)."""
        rows = await self._writer.read(
            select(MESSAGES.c.stats)
            .where(
                MESSAGES.c.chat_id == chat_id,
                MESSAGES.c.role == Role.ASSISTANT,
                MESSAGES.c.replaces.is_(None),
                MESSAGES.c.status != MessageStatus.GENERATING,
            )
            .order_by(MESSAGES.c.id.desc())
            .limit(1)
        )
        return dict(rows[0][0]) if rows and rows[0][0] else None

    async def alternatives(self, reply_id: int) -> list[StoredMessage]:
        """Earlier replies that /retry replaced with reply_id's text, oldest first."""
        return await self._messages(
            select(*_COLUMNS)
            .where(
                MESSAGES.c.replaces == reply_id,
                MESSAGES.c.status == MessageStatus.ALTERNATIVE,
            )
            .order_by(MESSAGES.c.id)
        )
