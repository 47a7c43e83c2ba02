"""Crash recovery by liveness: leases with heartbeats in the database's time, on SQLite and
PostgreSQL. A heartbeat "stopped" is made by moving it back in the database (as a process
silent that long would have left it), so these tests wait on nothing but the product."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.backends.base import Role
from botkit.core.events import ChatKey
from botkit.store.db import create_engine, upgrade
from botkit.store.leases import Lease, LeaseLost, LeaseTaken
from botkit.store.models import CutMarkRow, LeaseRow, MessageRow, MessageStatus
from botkit.store.repository import NewMessage, Repository
from tests.conftest import REPO
from tests.kill_between import STALE_AFTER

USER = NewMessage(Role.USER, None, "q", 3, "t", MessageStatus.COMPLETE)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def stop_heartbeat(engine: AsyncEngine, lease: Lease, seconds: float) -> None:
    """What a process silent for seconds leaves: its heartbeat that much in the past."""
    async with engine.begin() as conn:
        await conn.execute(
            update(LeaseRow)
            .where(LeaseRow.id == lease.id)
            .values(heartbeat=LeaseRow.heartbeat - seconds)
        )


async def statuses(engine: AsyncEngine) -> dict[str, str]:
    """Each reply's content: its status."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(MessageRow.content, MessageRow.status).where(MessageRow.role == "assistant")
        )
        return {str(row.content): str(row.status) for row in rows}


async def start(engine: AsyncEngine, instance: str | None, **timing: float) -> Repository:
    """A process's store with its lease (the repository's owner)."""
    repo = Repository(engine)
    lease, _ = await Lease.acquire(
        repo, instance, interval=timing.get("interval", 1.0),
        stale_after=timing.get("stale_after", 3.0),
    )  # fmt: skip
    repo.owner = lease.id
    repo.lease = lease  # type: ignore[attr-defined]  # kept beside it for the test
    return repo


async def marks(engine: AsyncEngine) -> int:
    """How many cut replies wait for their platform mark."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(CutMarkRow))).scalar_one())


async def leases(engine: AsyncEngine) -> list[str]:
    """The instance names holding leases (None for unnamed ones), sorted."""
    async with engine.connect() as conn:
        return sorted(str(n) for n in (await conn.execute(select(LeaseRow.instance))).scalars())


def lease_of(repo: Repository) -> Lease:
    found: Lease = repo.lease  # type: ignore[attr-defined]
    return found


async def generating(repo: Repository, chat: str, content: str, ref: str | None) -> int:
    """A turn whose reply is being generated, with content shown as message ref."""
    record = await repo.chat(ChatKey("t", chat))
    _, reply_id = await repo.begin_turn(record.id, USER)
    await repo.checkpoint(reply_id, content, ref)
    return reply_id


async def test_a_live_process_recovers_one_whose_heartbeat_stopped_and_never_a_live_one(
    engine: AsyncEngine,
) -> None:
    a, b, c = [await start(engine, name) for name in ("a", "b", None)]
    try:
        await generating(a, "served-by-a", "a's reply", "ref-a")
        await generating(b, "served-by-b", "b's reply", "ref-b")
        await generating(c, "served-by-c", "c's reply", None)
        record = await a.chat(ChatKey("t", "served-by-a"))
        _, retry = await a.begin_turn(record.id, None, replaces=0)  # a /retry in progress
        await a.checkpoint(retry, "a's retry", "ref-retry")
        # Everyone is alive: each pass of each process touches nothing.
        for repo in (a, b, c):
            assert await lease_of(repo).beat() == 0
        assert set((await statuses(engine)).values()) == {MessageStatus.GENERATING}
        # a's heartbeat stopped 10 s ago (bound: 3 s): b, still running, takes a's replies.
        await stop_heartbeat(engine, lease_of(a), 10.0)
        assert await lease_of(b).beat() == 2
        assert await statuses(engine) == {
            "a's reply": MessageStatus.INTERRUPTED,
            "b's reply": MessageStatus.GENERATING,
            "c's reply": MessageStatus.GENERATING,
        }  # the retry row is gone: the reply it was replacing stays as it was
        waiting = await b.cut_marks.pending("t", "")
        assert [(m.chat_key.platform_id, m.content, m.reply_ref) for m in waiting] == [
            ("served-by-a", "a's reply", "ref-a"),
            ("served-by-a", "a's retry", "ref-retry"),
        ]
        assert await lease_of(c).beat() == 0  # nothing is recovered twice
        assert len(await c.cut_marks.pending("t", "")) == 2
        with pytest.raises(LeaseLost, match="heartbeat stopped for over 3 s"):
            await lease_of(a).beat()
        # a's name is free again: its next start takes it at once.
        again = await start(engine, "a")
        await again.close()
    finally:
        for repo in (a, b, c):
            await repo.close()


async def test_replies_without_a_live_lease_are_recovered_at_start(engine: AsyncEngine) -> None:
    """Written before leases (NULL, or a name), or by a process that stopped without
    finishing them (its lease released): no live owner, so the next start takes them."""
    gone = await start(engine, "gone")
    await generating(gone, "z", "released", "1")
    await lease_of(gone).release()
    old = Repository(engine, owner=None)
    await generating(old, "x", "no owner", "2")
    named = Repository(engine, owner="host:/srv/release-41/config.toml")
    await generating(named, "y", "an instance name", "3")
    for repo in (old, named, gone):
        await repo.close()
    repo = Repository(engine)
    lease, recovered = await Lease.acquire(repo, None, interval=1.0, stale_after=3.0)
    assert recovered == 3
    assert set((await statuses(engine)).values()) == {MessageStatus.INTERRUPTED}
    assert [m.reply_ref for m in await repo.cut_marks.pending("t", "")] == ["1", "2", "3"]
    await lease.release()
    await repo.close()


async def test_a_second_process_with_a_live_ones_name_is_refused(engine: AsyncEngine) -> None:
    timing = {"interval": 0.05, "stale_after": 2.0}
    first = await start(engine, "bot-a", **timing)
    keeping = asyncio.create_task(lease_of(first).keep())
    try:
        await generating(first, "served", "still writing", "ref")
        second = Repository(engine)
        async with asyncio.timeout(30):
            with pytest.raises(LeaseTaken) as refused:
                await Lease.acquire(second, "bot-a", interval=0.05, stale_after=2.0)
        await second.close()
        message = str(refused.value)
        assert message.startswith("[service] instance 'bot-a' is already running: instance ")
        assert "is alive on this database" in message
        assert "set a different [service] instance" in message
        assert await statuses(engine) == {"still writing": MessageStatus.GENERATING}
    finally:
        keeping.cancel()
        await first.close()


async def test_a_crashed_predecessor_of_the_same_name_is_taken_over(engine: AsyncEngine) -> None:
    """systemd restarting a crashed service: the old lease, which no longer beats, is taken
    once it is older than the bound, and the crashed process's replies are recovered."""
    crashed = await start(engine, "bot-a", interval=0.05, stale_after=0.3)
    await generating(crashed, "served", "cut by the crash", "ref")
    await crashed.close()  # its lease stays: nobody released it
    restarted = Repository(engine)
    async with asyncio.timeout(30):
        lease, recovered = await Lease.acquire(restarted, "bot-a", interval=0.05, stale_after=0.3)
    assert recovered == 1
    assert await statuses(engine) == {"cut by the crash": MessageStatus.INTERRUPTED}
    async with engine.connect() as conn:
        held = await conn.execute(select(LeaseRow.id).where(LeaseRow.instance == "bot-a"))
        assert held.scalar_one() == lease.id
    await restarted.close()


async def test_a_kill_between_the_steps_of_recovery_leaves_all_or_nothing(
    engine: AsyncEngine, db_url: str
) -> None:
    live = await start(engine, "live", stale_after=STALE_AFTER)
    dead = await start(engine, "dead", stale_after=STALE_AFTER)
    try:
        await generating(live, "l", "live reply", "ref-l")
        await generating(dead, "d", "dead reply", "ref-d")
        record = await dead.chat(ChatKey("t", "d"))
        _, retry = await dead.begin_turn(record.id, None, replaces=0)
        await dead.checkpoint(retry, "dead retry", "ref-r")
        await stop_heartbeat(engine, lease_of(dead), 2 * STALE_AFTER)
        before = await statuses(engine)
        after = {"live reply": MessageStatus.GENERATING, "dead reply": MessageStatus.INTERRUPTED}
        states = []
        for kill_at in range(1, 50):
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.kill_between", db_url, "recover", str(kill_at),
                cwd=REPO, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await child.communicate()
            if child.returncode == 0:
                break
            assert child.returncode == -9, stderr.decode()
            # Killed at any point: the pass happened wholly or not at all, never twice.
            state = (await statuses(engine), await marks(engine), await leases(engine))
            assert state in [(before, 0, ["dead", "live"]), (after, 2, ["live"])], kill_at
            states.append(state[0] == after)
        # Killed after each statement of the pass (nothing done), then after it (all done).
        assert states[0] is False
        assert states[-1] is True
        assert len(states) >= 6
        assert (await statuses(engine), await marks(engine)) == (after, 2)
        waiting = await live.cut_marks.pending("t", "")
        assert sorted(m.content for m in waiting) == ["dead reply", "dead retry"]
        assert await leases(engine) == ["None", "live"]  # the child's, never released
    finally:
        await live.close()
        await dead.close()


async def test_a_kill_between_marking_and_forgetting_marks_again(
    engine: AsyncEngine, db_url: str
) -> None:
    """The platform edit is done, the kill comes before the entry is deleted: the next start
    marks the message again (the same text), and then forgets it."""
    repo = Repository(engine)
    await generating(repo, "x", "cut", "ref")  # no owner: recovered by the next start
    lease, _ = await Lease.acquire(repo, None, interval=1.0, stale_after=3.0)
    await lease.release()
    assert await mark_in_a_child(db_url, kill_at=1) == -9  # after the edit, before forgetting
    assert [m.content for m in await repo.cut_marks.pending("t", "")] == ["cut"]
    assert await mark_in_a_child(db_url, kill_at=0) == 0
    assert await repo.cut_marks.pending("t", "") == []
    await repo.close()


async def mark_in_a_child(url: str, kill_at: int) -> int | None:
    """tests.kill_between's "mark" in a child process; its exit status."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kill_between", url, "mark", str(kill_at), cwd=REPO
    )
    return await child.wait()


async def test_heartbeats_are_the_databases_time(engine: AsyncEngine) -> None:
    """Ages come from the database's clock alone: a heartbeat is the database's now."""
    repo = await start(engine, None)
    try:
        await lease_of(repo).beat()
        clock = (
            "(julianday('now') - 2440587.5) * 86400.0"
            if engine.dialect.name == "sqlite"
            else "extract(epoch from now())"
        )
        async with engine.connect() as conn:
            row = await conn.execute(text(f"SELECT {clock} - heartbeat, beats FROM leases"))
            age, beats = row.one()
        assert 0 <= float(age) < 5
        assert beats == 1
    finally:
        await repo.close()
