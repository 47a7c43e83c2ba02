"""Queries the core needs: chats and their settings, the kept window of messages, turns."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from sqlalchemy import (
    Integer,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import UpdateBase

from botkit.core.events import ChatKey
from botkit.core.recent import LruCache, RecentKeys
from botkit.core.settings import ChatSettings, valid_overrides
from botkit.store.cut_marks import CutMarks
from botkit.store.models import ChatRow, MessageRow, MessageStatus
from botkit.store.plugin_data import PluginData
from botkit.store.sqlite_driver import DriverStatement, driver_connection

__all__ = ["ChatRecord", "NewMessage", "Repository", "StoredMessage"]

log = logging.getLogger(__name__)

_SETTINGS = frozenset(ChatSettings.model_fields)


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
    stats: dict[str, Any] | None = None  # a reply's figures for /stats


_CHATS: Table = ChatRow.__table__  # type: ignore[assignment]  # declarative tables are Tables
_MESSAGES: Table = MessageRow.__table__  # type: ignore[assignment]
# Statements of every turn, built once (building one per call costs more than running it).
_INSERT_RETURNING_ID = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)
_TURN_COLUMNS = (
    "chat_id", "created_at", "role", "author", "content", "token_count", "token_model", "status",
    "seed", "replaces", "owner",
)  # fmt: skip
# The same rows as one multi-row INSERT, for SQLite's driver path (one statement, one hop).
_INSERT_ROWS = {
    n: insert(_MESSAGES)
    .values([{c: bindparam(f"{c}_{i}", type_=_MESSAGES.c[c].type) for c in _TURN_COLUMNS}
             for i in range(n)])
    .returning(_MESSAGES.c.id)
    for n in (1, 2)
}  # fmt: skip
_EARLIER = _MESSAGES.alias("earlier")
# Finishing a reply also returns the newest row of the chat before the turn's question: a row
# this process did not write there means another process serves the chat (see _check_owner).
_FINISH = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("row_id"))
    .values({name: bindparam(name) for name in (
        "content", "token_count", "token_model", "status", "seed", "reply_ref", "stats")})
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
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("reply_id"))
    .where(_MESSAGES.c.status == MessageStatus.GENERATING)
    .values(content=bindparam("content"), reply_ref=bindparam("reply_ref"))
)
_MESSAGE_COLUMNS = (
    _MESSAGES.c.id,
    _MESSAGES.c.role,
    _MESSAGES.c.author,
    _MESSAGES.c.content,
    _MESSAGES.c.token_count,
    _MESSAGES.c.token_model,
    _MESSAGES.c.status,
    _MESSAGES.c.seed,
)


def _message_fields(m: NewMessage) -> tuple[Any, ...]:
    """A new message's fields in StoredMessage's order (after the id)."""
    return (m.role, m.author, m.content, m.token_count, m.token_model, m.status, m.seed)


def _record(row: Any) -> ChatRecord:
    return ChatRecord(
        id=row.id,
        key=ChatKey(row.platform, row.chat_key),
        overrides=valid_overrides(row.overrides),
        window_start_id=row.window_start_id,
    )


def _now() -> datetime:
    return datetime.now(UTC)


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
        self._prepared = prepared  # compiled once per statement, kept by the repository

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


class Repository:
    """All reads and writes of chats and messages (SQLAlchemy Core: rows, not ORM objects).

    Recently used chats and their kept windows are cached in memory and updated by this
    repository's own writes, so a turn reads nothing back and writes two transactions:
    `begin_turn` (the question and an empty reply row, before generation) and `finish_turn`
    (the reply). In between, a growing reply costs one short `checkpoint` transaction every
    checkpoint_interval and whenever it moves on to a new platform message; moving the trim
    point (`set_window_start`, rare) and recounting rows for another tokenizer (`recount`,
    once) cost one more each. The caches need each chat served by one process (shards split
    chats). That is checked at no extra cost: the UPDATE that finishes a turn also returns
    (RETURNING) the id of the chat's newest row before the turn's question, and a row this
    process did not write there stops the caching of that chat, with an error in the log.

    owner is this process's lease id (botkit.store.leases), which the replies it writes carry
    while they are generated: no other live process touches them.
    """

    def __init__(
        self, engine: AsyncEngine, cached_chats: int = 1024, owner: str | None = None
    ) -> None:
        self.engine = engine
        self.owner = owner
        # One writer at a time: SQLite fails a deferred read-then-write transaction at once
        # when another connection holds the write lock, whatever the busy timeout.
        self._write_lock = asyncio.Lock()
        self._writer: AsyncConnection | None = None
        self._driver: aiosqlite.Connection | None = None  # under the writer, on SQLite
        self._prepared: dict[int, DriverStatement] = {}
        self._cached_chats = cached_chats
        self._chats: OrderedDict[ChatKey, ChatRecord] = OrderedDict()
        self._windows: OrderedDict[int, tuple[int, list[StoredMessage]]] = OrderedDict()
        # The one-process-per-chat guard: the newest row this process wrote in each chat, the
        # turns in flight (reply id: question id, the chat's newest row before it), and the
        # chats found written by another process, which are no longer cached.
        self._last_written: LruCache[int, int] = LruCache(cached_chats, lambda _: 1)
        self._in_flight: dict[int, tuple[int, int | None]] = {}
        self._shared: RecentKeys[int] = RecentKeys(cached_chats)
        # The stores beside this one, on the same writer.
        self.cut_marks = CutMarks(self)
        self.plugin_data = PluginData(self)

    def drop_caches(self) -> None:
        """Forget every cached chat and window (the next reads go to the database)."""
        self._chats.clear()
        self._windows.clear()

    def _remember_chat(self, record: ChatRecord) -> ChatRecord:
        self._chats[record.key] = record
        self._chats.move_to_end(record.key)
        while len(self._chats) > self._cached_chats:
            self._chats.popitem(last=False)
        return record

    def _forget(self, chat_id: int) -> None:
        self._windows.pop(chat_id, None)
        for key in [k for k, r in self._chats.items() if r.id == chat_id]:
            del self._chats[key]

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        # The single writer keeps its connection: no pool check-out and reset per turn.
        async with self._write_lock:
            if self._writer is None:
                self._writer = await self.engine.connect()
            async with self._writer.begin():
                yield self._writer

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One write transaction on this process's single writer, for the stores beside this
        one (leases, plugin data): SQLite takes one writer at a time."""
        return self._write()

    async def read(self, statement: Any) -> list[Any]:
        """The rows of a query, on a connection of its own."""
        return await self._read(statement)

    @asynccontextmanager
    async def _turn_write(self) -> AsyncIterator[_CoreWrites | _DriverWrites]:
        """One transaction of a turn's statements (see sqlite_driver for why two paths)."""
        if self.engine.dialect.name != "sqlite":
            async with self._write() as conn:
                yield _CoreWrites(conn)
            return
        async with self._write_lock:
            if self._writer is None:
                self._writer = await self.engine.connect()
            if self._driver is None:  # the writer's connection lives as long as the writer
                self._driver = await driver_connection(self._writer)
            db = self._driver
            try:
                yield _DriverWrites(db, self.engine.dialect, self._prepared)
            except BaseException:
                await db.rollback()
                raise
            await db.commit()

    async def close(self) -> None:
        """Return the writer's connection to the pool."""
        async with self._write_lock:
            if self._writer is not None:
                await self._writer.close()
                self._writer = self._driver = None

    async def _read(self, statement: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(statement))

    async def adopt_chats(self, platform: str, prefix: str) -> int:
        """Chats of platform stored before their keys named the bot (no "/" in the key) get
        prefix in front: the first bot to start after the upgrade takes them, with their
        history and settings. Returns how many."""
        async with self._write() as conn:
            result = await conn.execute(
                update(_CHATS)
                .where(_CHATS.c.platform == platform, _CHATS.c.chat_key.not_like("%/%"))
                .values(chat_key=literal(prefix, String) + _CHATS.c.chat_key)
            )
        if result.rowcount:
            self.drop_caches()
            log.warning(
                "%s: %d chats stored before chat keys named the bot are now bot %s's",
                platform, result.rowcount, prefix.rstrip("/"),
            )  # fmt: skip
        return int(result.rowcount)

    async def chat(self, key: ChatKey) -> ChatRecord:
        """The chat for key, created on first use."""
        cached = self._chats.get(key)
        if cached is not None and cached.id not in self._shared:
            self._chats.move_to_end(key)
            return cached
        query = select(_CHATS).where(
            _CHATS.c.platform == key.platform, _CHATS.c.chat_key == key.chat_id
        )
        rows = await self._read(query)
        if rows:
            return self._remember_chat(_record(rows[0]))
        async with self._write() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                now = _now()
                await conn.execute(
                    insert(_CHATS).values(
                        platform=key.platform, chat_key=key.chat_id, overrides={},
                        window_start_id=0, created_at=now, updated_at=now,
                    )
                )  # fmt: skip
                row = (await conn.execute(query)).one()
                self._keep_window(row.id, 0, [])  # a new chat: its window is known to be empty
            return self._remember_chat(_record(row))

    async def set_setting(self, chat_id: int, name: str, value: Any) -> None:
        """Override one setting for a chat (validated here); None returns it to the config
        default. The overrides are one JSON object: a new option needs no migration."""
        if name not in _SETTINGS:
            raise KeyError(name)
        if value is not None:
            ChatSettings.model_validate({name: value})  # raises ValidationError if out of range
        async with self._write() as conn:
            stored = (
                await conn.execute(select(_CHATS.c.overrides).where(_CHATS.c.id == chat_id))
            ).scalar_one()
            overrides = {k: v for k, v in valid_overrides(stored).items() if k != name}
            if value is not None:
                overrides[name] = value
            await conn.execute(
                update(_CHATS)
                .where(_CHATS.c.id == chat_id)
                .values(overrides=overrides, updated_at=_now())
            )
        for key, record in list(self._chats.items()):
            if record.id == chat_id:
                self._chats[key] = replace(record, overrides=overrides)

    async def window(self, chat_id: int, start_id: int) -> list[StoredMessage]:
        """Messages from start_id on, oldest first: one range scan of (chat_id, id)."""
        cached = self._windows.get(chat_id)
        if cached is not None and cached[0] <= start_id:
            self._windows.move_to_end(chat_id)
            if cached[0] == start_id:  # the usual turn: the window did not move
                return list(cached[1])
            kept = [m for m in cached[1] if m.id >= start_id]
            self._windows[chat_id] = (start_id, kept)
            return list(kept)
        rows = await self._read(
            select(*_MESSAGE_COLUMNS)
            .where(
                _MESSAGES.c.chat_id == chat_id,
                _MESSAGES.c.id >= start_id,
                _MESSAGES.c.replaces.is_(None),  # alternatives and retries in progress
            )
            .order_by(_MESSAGES.c.id)
        )
        messages = [StoredMessage(*row) for row in rows]
        self._keep_window(chat_id, start_id, messages)
        return list(messages)

    def _keep_window(self, chat_id: int, start_id: int, messages: list[StoredMessage]) -> None:
        """Cache a chat's kept window; the least recently used chats' windows go first."""
        if chat_id in self._shared:
            return  # another process writes it too: read it afresh every time
        self._windows[chat_id] = (start_id, messages)
        self._windows.move_to_end(chat_id)
        while len(self._windows) > self._cached_chats:
            self._windows.popitem(last=False)

    async def count_before(self, chat_id: int, start_id: int) -> int:
        """How many stored messages lie before start_id (no longer sent to the model)."""
        rows = await self._read(
            select(func.count())
            .select_from(_MESSAGES)
            .where(_MESSAGES.c.chat_id == chat_id, _MESSAGES.c.id < start_id)
        )
        return int(rows[0][0])

    async def set_window_start(self, chat_id: int, start_id: int) -> None:
        """Move the trimming position of a chat forward (never back: trimmed stays trimmed)."""
        async with self._write() as conn:
            await conn.execute(
                update(_CHATS)
                .where(_CHATS.c.id == chat_id, _CHATS.c.window_start_id < start_id)
                .values(window_start_id=start_id)
            )
        for key, record in list(self._chats.items()):
            if record.id == chat_id and record.window_start_id < start_id:
                self._chats[key] = replace(record, window_start_id=start_id)

    async def recount(self, updates: Sequence[tuple[int, int, str]]) -> None:
        """Store new token counts: (message id, count, tokenizer id)."""
        if not updates:
            return
        async with self._write() as conn:
            for message_id, count, model in updates:
                await conn.execute(
                    update(_MESSAGES)
                    .where(_MESSAGES.c.id == message_id)
                    .values(token_count=count, token_model=model)
                )
        self._windows.clear()

    async def add_messages(self, chat_id: int, messages: Sequence[NewMessage]) -> list[int]:
        """Store finished messages in one transaction; returns their ids. (Benchmarks and tests
        fill histories with it; a live turn writes through begin_turn and finish_turn.)"""
        now = _now()
        values = [{"chat_id": chat_id, "created_at": now, **asdict(m)} for m in messages]
        async with self._write() as conn:
            result = await conn.execute(insert(_MESSAGES).values(values).returning(_MESSAGES.c.id))
            ids = [int(row[0]) for row in result]
        if ids:
            self._last_written.put(chat_id, max(ids))
        rows = self._cached_rows(chat_id)
        if rows is not None:
            rows.extend(
                StoredMessage(i, *_message_fields(m)) for i, m in zip(ids, messages, strict=True)
            )
        return ids

    def _cached_rows(self, chat_id: int) -> list[StoredMessage] | None:
        cached = self._windows.get(chat_id)
        return None if cached is None else cached[1]

    async def begin_turn(
        self, chat_id: int, user: NewMessage | None, *, replaces: int | None = None
    ) -> tuple[int | None, int]:
        """Write a turn ahead of generation: the user message (None for a /retry) and an empty
        reply row marked generating, in one transaction. Returns (user id, reply id)."""
        now = _now()
        reply = {
            "chat_id": chat_id, "created_at": now, "role": "assistant", "author": None,
            "content": "", "token_count": 0, "token_model": "", "seed": None,
            "status": MessageStatus.GENERATING, "replaces": replaces, "stats": None,
            "owner": self.owner,
        }  # fmt: skip
        values = [] if user is None else [
            {"chat_id": chat_id, "created_at": now, "replaces": None, "owner": None,
             **asdict(user)}
        ]  # fmt: skip
        async with self._turn_write() as writes:
            ids = await writes.insert([*values, reply])
        if user is not None:
            self._in_flight[ids[-1]] = (ids[0], self._last_written.get(chat_id))
        self._last_written.put(chat_id, ids[-1])
        rows = self._cached_rows(chat_id)
        if rows is not None:
            if user is not None:
                rows.append(StoredMessage(ids[0], *_message_fields(user)))
            if replaces is None:
                rows.append(
                    StoredMessage(ids[-1], "assistant", None, "", 0, "", MessageStatus.GENERATING,
                                  None)
                )  # fmt: skip
        return (ids[0] if user is not None else None), ids[-1]

    async def checkpoint(self, reply_id: int, content: str, reply_ref: str | None) -> None:
        """Save a growing reply (one short transaction; the row stays marked generating)."""
        async with self._turn_write() as writes:
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
            "token_model": reply.token_model, "status": reply.status, "seed": reply.seed,
            "reply_ref": reply_ref, "stats": reply.stats,
        }  # fmt: skip
        if replaces is None:
            question, before = self._in_flight.pop(reply_id, (0, None))
            async with self._turn_write() as writes:
                found = await writes.fetch(
                    _FINISH, {"row_id": reply_id, "question_id": question, **new}
                )
            if found and before is not None and (found[0][0] or 0) > before:
                self._check_owner(chat_id, int(found[0][0]))
        else:
            async with self._write() as conn:
                columns = [_MESSAGES.c[name] for name in new]
                old = (await conn.execute(select(*columns).where(_MESSAGES.c.id == replaces))).one()
                kept = dict(zip(new, old, strict=True))
                kept["status"] = MessageStatus.ALTERNATIVE
                await conn.execute(update(_MESSAGES).where(_MESSAGES.c.id == replaces).values(new))
                await conn.execute(update(_MESSAGES).where(_MESSAGES.c.id == reply_id).values(kept))
        rows = self._cached_rows(chat_id)
        if rows is not None:
            place = replaces if replaces is not None else reply_id
            for index, row in enumerate(rows):
                if row.id == place:
                    rows[index] = replace(
                        row, content=reply.content, token_count=reply.token_count,
                        token_model=reply.token_model, status=reply.status, seed=reply.seed,
                    )  # fmt: skip

    def _check_owner(self, chat_id: int, foreign_id: int) -> None:
        """A row appeared in the chat between this process's turns: another process serves it
        too. Its caches (kept window, settings) would go stale, so they are no longer used."""
        self._forget(chat_id)
        if self._shared.add(chat_id):
            log.error(
                "chat %d is also written by another botkit process (message %d appeared "
                "between this process's turns). Each chat must be served by one process: "
                "split chats by platform, bot or Discord shard. This process now reads the "
                "chat from the database on every turn; the two processes' turns may "
                "interleave.",
                chat_id,
                foreign_id,
            )

    async def discard_reply(self, chat_id: int, reply_id: int) -> None:
        """Delete a reply row that never got text (a refused turn, a failed /retry)."""
        self._in_flight.pop(reply_id, None)
        async with self._write() as conn:
            await conn.execute(delete(_MESSAGES).where(_MESSAGES.c.id == reply_id))
        rows = self._cached_rows(chat_id)
        if rows is not None:
            rows[:] = [r for r in rows if r.id != reply_id]

    async def clear_history(self, chat_id: int) -> int:
        """Forget a chat's messages (its settings stay); returns how many were deleted."""
        async with self._write() as conn:
            result = await conn.execute(delete(_MESSAGES).where(_MESSAGES.c.chat_id == chat_id))
        self._forget(chat_id)
        return int(result.rowcount or 0)

    async def last_turn(self, chat_id: int) -> tuple[StoredMessage, StoredMessage] | None:
        """The newest user message and the reply after it, if the chat ends with a reply."""
        rows = await self._read(
            select(*_MESSAGE_COLUMNS)
            .where(_MESSAGES.c.chat_id == chat_id, _MESSAGES.c.replaces.is_(None))
            .order_by(_MESSAGES.c.id.desc())
            .limit(2)
        )
        found = [StoredMessage(*row) for row in rows]
        if len(found) == 2 and found[0].role == "assistant" and found[1].role == "user":
            return found[1], found[0]
        return None

    async def last_reply(self, chat_id: int) -> StoredMessage | None:
        """The newest assistant message of a chat."""
        rows = await self._read(
            select(*_MESSAGE_COLUMNS)
            .where(
                _MESSAGES.c.chat_id == chat_id,
                _MESSAGES.c.role == "assistant",
                _MESSAGES.c.replaces.is_(None),
            )
            .order_by(_MESSAGES.c.id.desc())
            .limit(1)
        )
        return StoredMessage(*rows[0]) if rows else None

    async def last_stats(self, chat_id: int) -> dict[str, Any] | None:
        """The figures of the chat's newest finished reply (None: it has none, or no reply)."""
        rows = await self._read(
            select(_MESSAGES.c.stats)
            .where(
                _MESSAGES.c.chat_id == chat_id,
                _MESSAGES.c.role == "assistant",
                _MESSAGES.c.replaces.is_(None),
                _MESSAGES.c.status != MessageStatus.GENERATING,
            )
            .order_by(_MESSAGES.c.id.desc())
            .limit(1)
        )
        return dict(rows[0][0]) if rows and rows[0][0] else None

    async def alternatives(self, reply_id: int) -> list[StoredMessage]:
        """Earlier replies that /retry replaced with reply_id's text, oldest first."""
        rows = await self._read(
            select(*_MESSAGE_COLUMNS)
            .where(
                _MESSAGES.c.replaces == reply_id,
                _MESSAGES.c.status == MessageStatus.ALTERNATIVE,
            )
            .order_by(_MESSAGES.c.id)
        )
        return [StoredMessage(*row) for row in rows]
