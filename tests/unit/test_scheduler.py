"""Fair scheduling between chats, one slot per in-process model."""

from __future__ import annotations

import asyncio

from botkit.core.scheduler import FairScheduler


class Jobs:
    """Generations on one single-slot model that record the order they ran in.

    The first job started with hold=True keeps the slot until release is set.
    """

    def __init__(self) -> None:
        self.scheduler = FairScheduler()
        self.order: list[str] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def job(self, chat: str, label: str, hold: bool = False) -> None:
        async with self.scheduler.slot("model", 1, chat):
            self.order.append(label)
            if hold:
                self.entered.set()
                await self.release.wait()

    def start(self, chat: str, label: str, hold: bool = False) -> asyncio.Task[None]:
        return asyncio.create_task(self.job(chat, label, hold))


async def test_a_busy_chat_does_not_starve_the_others() -> None:
    jobs = Jobs()
    # Tasks take their first step in creation order: the holder gets the slot, the rest queue.
    tasks = [jobs.start("a", "a0", hold=True)]
    tasks += [jobs.start("a", f"a{i}") for i in range(1, 5)]
    tasks += [jobs.start("b", "b0"), jobs.start("c", "c0")]
    await jobs.entered.wait()
    assert jobs.scheduler.queued("model") == 6
    assert jobs.scheduler.ahead_of("model", "d") == 3  # a0 running, then b0 and c0
    assert jobs.scheduler.ahead_of("model", "a") == 7  # after everything queued: a had its turns
    jobs.release.set()
    await asyncio.gather(*tasks)
    assert jobs.order == ["a0", "b0", "c0", "a1", "a2", "a3", "a4"]


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    scheduler = FairScheduler()
    entered = asyncio.Event()
    gate = asyncio.Event()
    ran: list[str] = []

    async def job(chat: str, hold: bool = False) -> None:
        async with scheduler.slot("m", 1, chat):
            ran.append(chat)
            if hold:
                entered.set()
                await gate.wait()

    holder = asyncio.create_task(job("a", hold=True))
    doomed = asyncio.create_task(job("b"))
    survivor = asyncio.create_task(job("c"))
    await entered.wait()
    doomed.cancel()
    gate.set()
    await asyncio.gather(holder, survivor)
    assert doomed.cancelled()
    assert ran == ["a", "c"]
    assert scheduler.queued("m") == 0


async def test_parallel_slots_let_a_second_chat_start_at_once() -> None:
    scheduler = FairScheduler()
    inside = asyncio.Event()
    release = asyncio.Event()
    both_in = asyncio.Event()
    count = 0

    async def job(chat: str) -> None:
        nonlocal count
        async with scheduler.slot("ollama", 2, chat):
            count += 1
            inside.set()
            if count == 2:
                both_in.set()
            await release.wait()

    first = asyncio.create_task(job("a"))
    await inside.wait()
    assert scheduler.ahead_of("ollama", "b") == 0  # a slot is free: no queue message
    second = asyncio.create_task(job("b"))
    await both_in.wait()
    assert scheduler.ahead_of("ollama", "c") == 1
    release.set()
    await asyncio.gather(first, second)


async def test_a_chat_arriving_late_still_goes_before_anyone_s_second_message() -> None:
    jobs = Jobs()
    tasks = [jobs.start("a", "a0", hold=True)]
    tasks += [jobs.start("a", f"a{i}") for i in (1, 2)]
    tasks.append(jobs.start("b", "b0"))
    await jobs.entered.wait()
    late = jobs.start("c", "c0")  # arrives after a's backlog is queued
    async with asyncio.timeout(5):
        await jobs.scheduler.wait_until_queued("model", 4)
    jobs.release.set()
    await asyncio.gather(*tasks, late)
    assert jobs.order == ["a0", "b0", "c0", "a1", "a2"]
