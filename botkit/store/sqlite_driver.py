"""The turn's statements on SQLite, run on the aiosqlite connection under SQLAlchemy's engine.

Every turn writes twice (the write-ahead rows, then the finished reply), so these few
statements are the store's hot path. Through SQLAlchemy's aiosqlite adapter each statement
costs four hops to aiosqlite's thread (cursor, execute, fetch, close) plus the commit; here a
statement is one hop (`execute_fetchall`). The statements are still declared once, as
SQLAlchemy Core, and compiled once for the engine's dialect with its own type processing
(dates as SQLAlchemy stores them), so both paths write the same rows. PostgreSQL and every
other write go through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

__all__ = ["DriverStatement", "driver_connection"]


class DriverStatement:
    """A Core statement compiled once, with its parameters in the driver's order and form."""

    def __init__(self, statement: UpdateBase, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # a DML statement compiles to SQL
        self.sql = compiled.string
        names = compiled.positiontup or []
        self._names = tuple(names)
        processors: list[Callable[[Any], Any] | None] = []
        # Literal values in the statement (status = 'generating') are binds with a value.
        self._literals: dict[str, Any] = {}
        for name in names:
            bind = compiled.binds[name]
            processors.append(bind.type.dialect_impl(dialect).bind_processor(dialect))
            if not bind.required:
                self._literals[name] = bind.effective_value
        self._processors = tuple(processors)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for values (keyed by bind name)."""
        given = {**self._literals, **values} if self._literals else values
        return tuple(
            given[name] if process is None else process(given[name])
            for name, process in zip(self._names, self._processors, strict=True)
        )

    async def run(self, db: aiosqlite.Connection, values: Mapping[str, Any]) -> Sequence[Any]:
        """Execute in one hop to the driver's thread; the rows it returns (RETURNING)."""
        return list(await db.execute_fetchall(self.sql, self.parameters(values)))


async def driver_connection(conn: AsyncConnection) -> aiosqlite.Connection:
    """The aiosqlite connection under an idle SQLAlchemy connection (no transaction open)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, aiosqlite.Connection):
        raise TypeError(f"not an aiosqlite connection: {type(driver).__name__}")
    return driver
