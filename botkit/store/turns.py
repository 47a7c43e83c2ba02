"""The turn's writes: the question and an empty reply ahead of generation, the growing reply,
the finished one.

A turn's own writes cost two write transactions plus one per checkpoint: begin_turn (the
question and the reply row marked generating, together), each checkpoint while the reply grows
(the conversation saves one every [storage] checkpoint_interval seconds, and when the reply
moves on to another platform message), and finish_turn. A turn that trims the window or
recounts tokens adds one transaction for each (chats.py, messages.py).

The turn's writes are the store's hot path: on SQLite each is one statement run straight on
the driver (botkit.store.sqlite_driver), on PostgreSQL through SQLAlchemy; a /retry's finish,
which moves the old reply aside, goes through SQLAlchemy on both.
The cached window (botkit.store.caches) takes each row as it is written, and finishing a reply
feeds the one-process guard (botkit.store.guard).

owner is this process's lease id (botkit.store.leases), which the replies it writes carry
while they are generated: no other live process touches them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiosqlite
from sqlalchemy import Integer, bindparam, delete, func, insert, literal_column, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase

from botkit.backends.base import Role
from botkit.images.spec import Image
from botkit.store.caches import Caches
from botkit.store.guard import OwnerGuard
from botkit.store.images import link_images, store_images
from botkit.store.models import MESSAGES, MessageStatus, utc_now
from botkit.store.records import NewMessage, StoredMessage
from botkit.store.sqlite_driver import DriverStatement
from botkit.store.writer import Writer

__all__ = ["Turns"]

# Statements of every turn, built once (building one per call costs more than running it).
_INSERT_RETURNING_ID = insert(MESSAGES).returning(MESSAGES.c.id, sort_by_parameter_order=True)
_TURN_COLUMNS = (
    "chat_id", "created_at", "role", "author", "content", "token_count", "tokenizer_id", "status",
    "seed", "replaces", "owner", "tool",
)  # fmt: skip
# The same rows as one multi-row INSERT, for SQLite's driver path (one statement, one hop).
_INSERT_ROWS = {
    n: insert(MESSAGES)
    .values([{c: bindparam(f"{c}_{i}", type_=MESSAGES.c[c].type) for c in _TURN_COLUMNS}
             for i in range(n)])
    .returning(MESSAGES.c.id)
    for n in (1, 2)
}  # fmt: skip
_EARLIER = MESSAGES.alias("earlier")
# Finishing a reply also returns the newest row of the chat before the turn's question: a row
# this process did not write there means another process serves the chat (botkit.store.guard).
_FINISH = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("row_id"))
    .values({name: bindparam(name) for name in (
        "content", "token_count", "tokenizer_id", "status", "seed", "reply_ref", "stats")})
    .returning(
        select(func.max(_EARLIER.c.id))
        # Spelt out: SQLAlchemy renders RETURNING's columns unqualified on SQLite, and an
        # unqualified chat_id inside the subquery would be the inner table's own.
        .where(_EARLIER.c.chat_id == literal_column("messages.chat_id"),
               _EARLIER.c.id < bindparam("question_id", type_=Integer))
        .scalar_subquery()
    )
)  # fmt: skip
_CHECKPOINT = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("reply_id"))
    .where(MESSAGES.c.status == MessageStatus.GENERATING)
    .values(content=bindparam("content"), reply_ref=bindparam("reply_ref"))
)


class _CoreWrites:
    """The turn's statements through SQLAlchemy (PostgreSQL)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def insert(self, rows: list[dict[str, Any]]) -> list[int]:
        # The ids come back in the rows' order on every database (sort_by_parameter_order).
        result = await self._conn.execute(_INSERT_RETURNING_ID, rows)
        return [int(i) for i in result.scalars()]

    async def execute(self, statement: UpdateBase, values: dict[str, Any]) -> None:
        await self._conn.execute(statement, values)

    async def fetch(self, statement: UpdateBase, values: dict[str, Any]) -> list[Any]:
        return list(await self._conn.execute(statement, values))


class _DriverWrites:
    """The same statements on SQLite's aiosqlite connection, one hop each."""

    def __init__(
        self, db: aiosqlite.Connection, dialect: Dialect, prepared: dict[int, DriverStatement]
    ) -> None:
        self._db = db
        self._dialect = dialect
        self._prepared = prepared  # compiled once per statement, kept by Turns

    def _statement(self, statement: UpdateBase) -> DriverStatement:
        found = self._prepared.get(id(statement))
        if found is None:
            found = self._prepared[id(statement)] = DriverStatement(statement, self._dialect)
        return found

    async def insert(self, rows: list[dict[str, Any]]) -> list[int]:
        values = {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in _TURN_COLUMNS}
        found = await self._statement(_INSERT_ROWS[len(rows)]).run(self._db, values)
        # RETURNING's row order is unspecified, but one statement gives its rows increasing
        # rowids (the largest + 1, https://www.sqlite.org/autoinc.html), so sorted ids are
        # the rows' ids in order.
        return sorted(int(row[0]) for row in found)

    async def execute(self, statement: UpdateBase, values: dict[str, Any]) -> None:
        await self._statement(statement).run(self._db, values)

    async def fetch(self, statement: UpdateBase, values: dict[str, Any]) -> list[Any]:
        return list(await self._statement(statement).run(self._db, values))


class Turns:
    """The write path of one process's turns."""

    def __init__(
        self, writer: Writer, caches: Caches, guard: OwnerGuard, owner: str | None
    ) -> None:
        self.owner = owner
        self._writer = writer
        self._caches = caches
        self._guard = guard
        self._prepared: dict[int, DriverStatement] = {}

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_CoreWrites | _DriverWrites]:
        """One transaction of a turn's statements (see sqlite_driver for why two paths)."""
        engine = self._writer.engine
        if engine.dialect.name != "sqlite":
            async with self._writer.transaction() as conn:
                yield _CoreWrites(conn)
            return
        async with self._writer.driver_transaction() as db:
            yield _DriverWrites(db, engine.dialect, self._prepared)

    async def begin_turn(
        self, chat_id: int, user: NewMessage | None, *, replaces: int | None = None,
        images: Sequence[Image] = (),
    ) -> tuple[int | None, int]:  # fmt: skip
        """Write a turn ahead of generation: the user message (None for a /retry) and an empty
        reply row marked generating, in one transaction. Returns (user id, reply id).

        images: the pictures the user message carries, stored (once each) in the same
        transaction and linked to it after any ids already in user.images: a crash leaves
        either all of the turn or none of it, never a message without its pictures.
        """
        now = utc_now()
        reply = {
            "chat_id": chat_id, "created_at": now, "role": Role.ASSISTANT, "author": None,
            "content": "", "token_count": 0, "tokenizer_id": "", "seed": None,
            "status": MessageStatus.GENERATING, "replaces": replaces, "stats": None,
            "owner": self.owner, "tool": None, "images": None,
        }  # fmt: skip
        if user is None or not (images or user.images):
            values = [] if user is None else [
                {"chat_id": chat_id, "created_at": now, "replaces": None, "owner": None,
                 **user.columns()}
            ]  # fmt: skip
            if images:
                raise ValueError("images need the user message that carries them")
            async with self._transaction() as writes:
                ids = await writes.insert([*values, reply])
        else:
            # A turn with pictures: rare, so through SQLAlchemy on both databases.
            async with self._writer.transaction() as conn:
                saved = await store_images(conn, images)
                user = replace(user, images=(*user.images, *saved))
                row = {"chat_id": chat_id, "created_at": now, "replaces": None, "owner": None}
                ids = await _CoreWrites(conn).insert([{**row, **user.columns()}, reply])
                await link_images(conn, [(ids[0], user.images)])
        user_id = ids[0] if user is not None else None
        self._guard.began(chat_id, user_id, ids[-1])
        rows = self._caches.rows(chat_id)
        if rows is not None:
            if user is not None:
                rows.append(user.stored(ids[0]))
            if replaces is None:
                rows.append(
                    StoredMessage(ids[-1], Role.ASSISTANT, None, "", 0, "",
                                  MessageStatus.GENERATING, None)
                )  # fmt: skip
        return user_id, ids[-1]

    async def checkpoint(self, reply_id: int, content: str, reply_ref: str | None) -> None:
        """Save a growing reply (one short transaction; the row stays marked generating)."""
        async with self._transaction() as writes:
            await writes.execute(
                _CHECKPOINT, {"reply_id": reply_id, "content": content, "reply_ref": reply_ref}
            )

    async def finish_turn(
        self, chat_id: int, reply_id: int, reply: NewMessage, reply_ref: str | None,
        *, replaces: int | None = None,
    ) -> None:  # fmt: skip
        """Store a finished (or interrupted) reply in its row.

        For a /retry (replaces = the old reply's id) the new reply takes the old one's place in
        the history and the old text moves to reply_id's row as an alternative, in one
        transaction: until then the old reply was untouched.
        """
        new = {
            "content": reply.content, "token_count": reply.token_count,
            "tokenizer_id": reply.tokenizer_id, "status": reply.status, "seed": reply.seed,
            "reply_ref": reply_ref, "stats": reply.stats,
        }  # fmt: skip
        if replaces is None:
            question, before = self._guard.finishing(reply_id)
            async with self._transaction() as writes:
                found = await writes.fetch(
                    _FINISH, {"row_id": reply_id, "question_id": question, **new}
                )
            self._guard.check(chat_id, before, found[0][0] if found else None)
        else:
            async with self._writer.transaction() as conn:
                columns = [MESSAGES.c[name] for name in new]
                old = (await conn.execute(select(*columns).where(MESSAGES.c.id == replaces))).one()
                kept = dict(zip(new, old, strict=True))
                kept["status"] = MessageStatus.ALTERNATIVE
                await conn.execute(update(MESSAGES).where(MESSAGES.c.id == replaces).values(new))
                await conn.execute(update(MESSAGES).where(MESSAGES.c.id == reply_id).values(kept))
        rows = self._caches.rows(chat_id)
        if rows is not None:
            place = replaces if replaces is not None else reply_id
            for index, row in enumerate(rows):
                if row.id == place:
                    rows[index] = replace(
                        row, content=reply.content, token_count=reply.token_count,
                        tokenizer_id=reply.tokenizer_id, status=reply.status, seed=reply.seed,
                    )  # fmt: skip

    async def tool_round(
        self, chat_id: int, reply_id: int, call: NewMessage, results: Sequence[NewMessage]
    ) -> tuple[list[int], int]:
        """The model called tools: the reply row reply_id becomes the row of the calls, and the
        calls' result rows (marked generating until each tool returns) and the next reply row
        (generating) are written after it, in one transaction, before any tool runs. A crash
        while a tool runs leaves them generating: recovery marks them interrupted, and the
        history keeps the calls with their (interrupted) results. Returns (the result rows'
        ids in the calls' order, the next reply's id)."""
        now = utc_now()
        fresh = {"chat_id": chat_id, "created_at": now, "replaces": None, "owner": self.owner}
        next_reply = NewMessage(Role.ASSISTANT, None, "", 0, "", MessageStatus.GENERATING)
        rows = [{**fresh, **r.columns()} for r in (*results, next_reply)]
        async with self._writer.transaction() as conn:
            await conn.execute(
                update(MESSAGES).where(MESSAGES.c.id == reply_id).values(call.columns())
            )
            result = await conn.execute(_INSERT_RETURNING_ID, rows)
            ids = [int(i) for i in result.scalars()]
        self._guard.moved(chat_id, reply_id, ids[-1])
        cached = self._caches.rows(chat_id)
        if cached is not None:
            for index, row in enumerate(cached):
                if row.id == reply_id:
                    cached[index] = call.stored(reply_id)
            cached.extend(r.stored(i) for r, i in zip((*results, next_reply), ids, strict=True))
        return ids[:-1], ids[-1]

    async def finish_result(self, chat_id: int, row_id: int, result: NewMessage) -> None:
        """Store a tool's result (or why it failed) in its row, written ahead by tool_round."""
        async with self._writer.transaction() as conn:
            await conn.execute(
                update(MESSAGES).where(MESSAGES.c.id == row_id).values(result.columns())
            )
        cached = self._caches.rows(chat_id)
        if cached is not None:
            for index, row in enumerate(cached):
                if row.id == row_id:
                    cached[index] = result.stored(row_id)

    async def discard_reply(self, chat_id: int, reply_id: int) -> None:
        """Delete a reply row that never got text (a refused turn, a failed /retry)."""
        self._guard.dropped(reply_id)
        async with self._writer.transaction() as conn:
            await conn.execute(delete(MESSAGES).where(MESSAGES.c.id == reply_id))
        rows = self._caches.rows(chat_id)
        if rows is not None:
            rows[:] = [r for r in rows if r.id != reply_id]
