"""4. Core throughput: messages routed, answered and committed per second, with a null model.

A scripted backend answers instantly, so what is measured is botkit itself: routing, prompt
building, scheduling, the reply stream and one committed SQLite transaction per turn.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text

from bench.common import Result, incoming, p99, started_bot
from botkit.adapters.memory import MemoryTarget
from botkit.backends.scripted import ScriptedBackend

GOAL = 1000.0


async def _measure(chats: int, per_chat: int) -> tuple[float, float]:
    latencies: list[float] = []
    async with started_bot({"local": ScriptedBackend("local")}) as bot:

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
    results = []
    for chats, per_chat in ((1, 1000), (50, 40)):
        rate, latency = await _measure(chats, per_chat)
        results.append(
            Result(f"messages/s, {chats} chat(s), each turn committed", rate, GOAL, "msg/s",
                   rate / GOAL, "≥ 1", rate >= GOAL, f"p99 latency {latency * 1000:.1f} ms")
        )  # fmt: skip
    return results
