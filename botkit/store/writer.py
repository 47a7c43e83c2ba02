"""The store's one write connection: each write of this process is a transaction on it, one at
a time. Reads take connections of their own from the engine's pool.

One writer, because SQLite fails a deferred read-then-write transaction at once when another
connection holds the write lock, whatever the busy timeout; keeping its connection also saves
a pool check-out and reset per transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botkit.store.sqlite_driver import driver_connection

__all__ = ["Writer"]


class Writer:
    """This process's single writer on engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()
        self._conn: AsyncConnection | None = None
        self._driver: aiosqlite.Connection | None = None  # under _conn, on SQLite

    async def _connection(self) -> AsyncConnection:
        """The writer's connection, connected on first use (call under the lock)."""
        if self._conn is None:
            self._conn = await self.engine.connect()
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed when the block ends (rolled back if it raises)."""
        async with self._lock:
            conn = await self._connection()
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def driver_transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """SQLite only: one write transaction on the aiosqlite connection under the writer's,
        for statements run by botkit.store.sqlite_driver."""
        async with self._lock:
            conn = await self._connection()
            if self._driver is None:  # it lives as long as the writer's connection
                self._driver = await driver_connection(conn)
            db = self._driver
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.commit()

    async def read(self, statement: Any) -> list[Any]:
        """The rows of a query, on a connection of its own."""
        async with self.engine.connect() as conn:
            return list(await conn.execute(statement))

    async def close(self) -> None:
        """Return the writer's connection to the pool (the next write takes one again)."""
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = self._driver = None
