"""Which botkit processes are alive, told by a heartbeat in the database's own time.

Each process holds a lease row from start to stop and renews its heartbeat every
[service] heartbeat_interval seconds. A lease whose heartbeat is older than [service]
heartbeat_timeout is dead: its process crashed, hung or lost the database. Any process then
recovers the replies it left generating (botkit.store.recovery). Every process does this when
it starts and at each of its own heartbeats, in the same transaction as the heartbeat, so a
cut reply is marked within about heartbeat_timeout whoever is still running, and a live
process's replies are never touched.

Ages are measured on the database's clock only (PostgreSQL's now(); SQLite's julianday('now'),
the clock of the one machine that holds the file), never by comparing two processes' clocks.
Each pass is one transaction: a process killed in the middle of one leaves nothing half done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import (
    Double,
    cast,
    delete,
    extract,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from botkit.store.models import LEASES
from botkit.store.recovery import GoneLease, recover

if TYPE_CHECKING:
    from botkit.store.repository import Repository

__all__ = ["Lease", "LeaseLost", "LeaseTaken", "database_clock"]

log = logging.getLogger(__name__)


class LeaseTaken(Exception):
    """Another live process holds this [service] instance name (a configuration error)."""


class LeaseLost(Exception):
    """This process's heartbeat stopped for longer than [service] heartbeat_timeout and
    another process took its replies as cut: it must stop (systemd starts it afresh)."""


def database_clock(dialect: str) -> ColumnElement[float]:
    """The database's current time in seconds since 1970, evaluated by the database."""
    if dialect == "sqlite":
        return cast((func.julianday("now") - 2440587.5) * 86400.0, Double)
    return cast(extract("epoch", func.now()), Double)


@dataclass(frozen=True, slots=True)
class _Holder:
    """A lease as another process sees it."""

    instance: str | None
    host: str
    pid: int
    beats: int
    age: float  # seconds since its last heartbeat, on the database's clock

    def describe(self) -> str:
        return _process(self.instance, self.host, self.pid)


def _process(instance: str | None, host: str, pid: int) -> str:
    """A lease's process, for the log."""
    name = f"instance {instance!r}" if instance else "an unnamed process"
    return f"{name} (pid {pid} on {host})"


class Lease:
    """This process's lease: acquire() it at start, keep() it renewed, release() at stop."""

    def __init__(
        self, repo: Repository, lease_id: str, instance: str | None, interval: float,
        stale_after: float,
    ) -> None:  # fmt: skip
        self.repo = repo
        self.id = lease_id
        self.instance = instance
        self.interval = interval
        self.stale_after = stale_after
        self._dialect = repo.engine.dialect.name

    @classmethod
    async def acquire(
        cls, repo: Repository, instance: str | None, *, interval: float, stale_after: float
    ) -> tuple[Lease, int]:
        """Take a lease for instance, recovering the replies of processes found dead first.
        Returns the lease and how many replies were recovered.

        If a lease of that name exists, its holder may be alive, or may have crashed just
        now (systemd restarting it): this waits, up to stale_after, until either its heartbeat
        moves (alive: LeaseTaken) or it is dead (taken over).
        """
        lease = cls(repo, uuid.uuid4().hex, instance, interval, stale_after)
        recovered = 0
        first: _Holder | None = None
        while True:
            recovered += await lease._recover()
            holder = await lease._take()
            if holder is None:
                return lease, recovered
            if first is None:
                first = holder
                log.warning(
                    "%s holds this process's name, its last heartbeat %.1f s ago: waiting up "
                    "to %.0f s to see whether it is alive",
                    holder.describe(), holder.age, stale_after - holder.age,
                )  # fmt: skip
            elif holder.beats != first.beats:
                raise LeaseTaken(
                    f"[service] instance {instance!r} is already running: {holder.describe()} "
                    f"is alive on this database (its heartbeat is {holder.age:.1f} s old). "
                    "Each botkit process on one database needs its own instance name: stop "
                    "the other one, or set a different [service] instance in this config"
                )
            await asyncio.sleep(interval / 2)  # the holder beats every interval, if alive

    async def _recover(self) -> int:
        async with self.repo.transaction() as conn:
            now = (await conn.execute(select(database_clock(self._dialect)))).scalar_one()
            count, gone = await recover(conn, now, self.stale_after)
        self._report(count, gone)
        return count

    async def _take(self) -> _Holder | None:
        """Insert this lease (None), or the live holder of its name."""
        clock = database_clock(self._dialect)
        while True:
            try:
                async with self.repo.transaction() as conn:
                    await conn.execute(
                        insert(LEASES).values(
                            id=self.id, instance=self.instance,
                            host=socket.gethostname()[:255], pid=os.getpid(), started=clock,
                            heartbeat=clock, beats=0,
                        )
                    )  # fmt: skip
                return None
            except IntegrityError:  # the name is held (it is unique): by whom?
                pass
            async with self.repo.transaction() as conn:
                found = (
                    await conn.execute(
                        select(
                            LEASES.c.instance,
                            LEASES.c.host,
                            LEASES.c.pid,
                            LEASES.c.beats,
                            clock - LEASES.c.heartbeat,
                        ).where(LEASES.c.instance == self.instance)
                    )
                ).first()
            if found is not None:
                return _Holder(*found)
            # Released between the two statements: take it now.

    async def beat(self) -> int:
        """Renew the heartbeat and recover the replies of dead owners, in one transaction.
        Returns how many replies were recovered; LeaseLost if this lease was taken over."""
        async with self.repo.transaction() as conn:
            now = (
                await conn.execute(
                    update(LEASES)
                    .where(LEASES.c.id == self.id)
                    .values(heartbeat=database_clock(self._dialect), beats=LEASES.c.beats + 1)
                    .returning(LEASES.c.heartbeat)
                )
            ).scalar_one_or_none()
            if now is None:
                raise LeaseLost(
                    f"this process's heartbeat stopped for over {self.stale_after:g} s "
                    "([service] heartbeat_timeout), so another process took its replies in "
                    "flight as cut; stopping so that it starts afresh"
                )
            count, gone = await recover(conn, now, self.stale_after)
        self._report(count, gone)
        return count

    def _report(self, count: int, gone: list[GoneLease]) -> None:
        if gone:
            left_by = [
                f"{_process(g.instance, g.host, g.pid)}, silent for {g.silent:.0f} s" for g in gone
            ]
            log.warning(
                "botkit processes gone (no heartbeat for over %g s): %s",
                self.stale_after, "; ".join(left_by),
            )  # fmt: skip
        if count:
            self.repo.drop_caches()  # cached windows still show those replies generating
            log.warning(
                "%d %s cut (%s process stopped without finishing it) and marked interrupted",
                count, "reply was" if count == 1 else "replies were",
                "its" if count == 1 else "their",
            )  # fmt: skip

    async def keep(self) -> None:
        """Beat every interval until cancelled; LeaseLost ends it. A beat that fails (the
        database unreachable) is retried at the next interval: the lease is lost only when
        the database says another process took it."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except LeaseLost:
                raise
            except Exception as exc:  # any database error: retried, as the watchdog would
                log.warning("heartbeat failed, retrying in %g s: %s", self.interval, exc)

    async def release(self) -> None:
        """Give the lease up (at a clean stop): the name is free at once, and any reply still
        generating is taken as cut by the next process to beat."""
        async with self.repo.transaction() as conn:
            await conn.execute(delete(LEASES).where(LEASES.c.id == self.id))
