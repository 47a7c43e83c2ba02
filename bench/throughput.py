"""4. Core throughput: messages routed, answered and committed per second, with a null model.

A scripted backend answers instantly, so what is measured is botkit itself: routing, prompt
building, scheduling, the reply stream and the turn's transactions (write-ahead, finish).
The baseline, in the same run, is a raw aiosqlite loop writing the same two rows per turn in
one transaction each, on the same pragmas (WAL, synchronous=NORMAL): the floor any SQLite
bot pays, so the ratio shows botkit's own cost on this machine, whatever its speed.

Where a turn's time goes (profiled on the 2-core machine, 1.1-1.4 ms a turn): the two
transactions, on the aiosqlite connection itself (store/sqlite_driver.py), 0.7-0.8 ms against
the raw loop's one at 0.3 ms; the history and prompt plan over a kept window of about 340
messages, 0.17-0.2 ms; routing, settings, the reply stream and metrics, the rest.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime

import aiosqlite
from sqlalchemy import text

from bench.common import Result, incoming, p99, started_bot
from botkit.adapters.memory import MemoryTarget
from botkit.backends.scripted import ScriptedBackend

GOAL = 0.25  # of the raw loop's turns per second


async def _raw_loop(turns: int) -> float:
    """Turns per second of a bare aiosqlite loop: a user row and a reply row, committed."""
    with tempfile.TemporaryDirectory() as folder:
        async with aiosqlite.connect(f"{folder}/raw.db") as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute(
                "CREATE TABLE messages (id INTEGER PRIMARY KEY, chat_id INTEGER, role TEXT, "
                "content TEXT, token_count INTEGER, status TEXT, created_at TEXT)"
            )
            insert = (
                "INSERT INTO messages (chat_id, role, content, token_count, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
            )
            start = time.perf_counter()
            for i in range(turns):
                now = datetime.now(UTC).isoformat()
                await db.execute(insert, (1, "user", f"message {i}", 5, "complete", now))
                await db.execute(insert, (1, "assistant", f"echo: message {i}", 6, "complete", now))
                await db.commit()
            return turns / (time.perf_counter() - start)


async def _measure(chats: int, per_chat: int, *, memory: bool = False) -> tuple[float, float]:
    latencies: list[float] = []
    # Recall off for the core figures (each message would also be embedded and searched:
    # the last figure measures that, in a chat long enough to recall from).
    sections = {"defaults": {"memory": memory}, "retrieval": {"vectors": memory}}
    async with started_bot({"local": ScriptedBackend("local")}, **sections) as bot:

        async def one_chat(name: str) -> None:
            target = MemoryTarget()
            for i in range(per_chat):
                start = time.perf_counter()
                await bot.router.handle(incoming(f"message {i}", name), target)
                latencies.append(time.perf_counter() - start)
                target.clear()

        start = time.perf_counter()
        await asyncio.gather(*(one_chat(f"tp-{c}") for c in range(chats)))
        elapsed = time.perf_counter() - start
        async with bot.repo.engine.connect() as conn:
            stored = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one()
    if stored != 2 * chats * per_chat:  # every turn: the question and the answer, committed
        raise RuntimeError(f"expected {2 * chats * per_chat} stored messages, found {stored}")
    return chats * per_chat / elapsed, p99(latencies)


async def run() -> list[Result]:
    """Messages per second with 1 and with 50 concurrent chats."""
    raw = await _raw_loop(2000)
    results = []
    for chats, per_chat in ((1, 1000), (50, 40)):
        rate, latency = await _measure(chats, per_chat)
        ratio = rate / raw
        results.append(
            Result(f"messages/s, {chats} chat(s), vs a raw aiosqlite loop", rate, raw, "msg/s",
                   ratio, f"≥ {GOAL}", ratio >= GOAL, f"p99 latency {latency * 1000:.1f} ms")
        )  # fmt: skip
    # What recall costs a turn with a null model: a query vector (all-MiniLM-L6-v2 on the
    # CPU), a keyword and a vector search, the fit; the chat outgrows its window early.
    on, latency = await _measure(1, 1000, memory=True)
    off = results[0].botkit
    results.append(
        Result("messages/s, 1 chat, memory on vs off", on, off, "msg/s", on / off, "report",
               True, f"p99 latency {latency * 1000:.1f} ms; recall searches what is indexed so far")
    )  # fmt: skip
    return results
