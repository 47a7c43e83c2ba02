"""5. Fairness: 20 chats each send 5 messages at once to one in-process model.

Counts, for each chat, how many replies started (first text shown) before its first one.
Round-robin serves every chat's first message before anyone's second; FIFO by arrival would
make the last chat wait for every message of the 19 before it.
"""

from __future__ import annotations

import asyncio

from bench.common import Result, TimingTarget, incoming, started_bot

CHATS = 20
EACH = 5


async def run() -> list[Result]:
    """Replies started before each chat's first reply, against FIFO's."""
    started: list[tuple[float, str]] = []
    async with started_bot(defaults={"max_tokens": 8, "seed": 3}) as bot:

        async def ask(name: str, i: int) -> None:
            target = TimingTarget()
            await bot.router.handle(incoming(f"Say a word ({i}).", name), target)
            assert target.first is not None
            started.append((target.first, name))

        await asyncio.gather(
            *(asyncio.create_task(ask(f"fair-{c}", i)) for c in range(CHATS) for i in range(EACH))
        )
    order = [name for _, name in sorted(started)]
    before_first = {name: order.index(name) for name in set(order)}
    worst = max(before_first.values())
    fifo_worst = (CHATS - 1) * EACH
    return [
        Result("replies before a chat's first reply (worst)", worst, fifo_worst, "",
               worst / fifo_worst, f"≤ {CHATS - 1}", worst <= CHATS - 1,
               "baseline: FIFO by arrival; goal: at most one reply per other chat")
    ]  # fmt: skip
