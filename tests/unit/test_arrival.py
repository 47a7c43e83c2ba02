"""Arrival order: a chat's messages go on in the order they arrived, other chats do not wait."""

from __future__ import annotations

import asyncio

from botkit.core.arrival import ArrivalOrder
from botkit.core.events import ChatKey

A, B = ChatKey("test", "a"), ChatKey("test", "b")


async def test_a_chats_messages_go_in_arrival_order_and_other_chats_do_not_wait() -> None:
    line = ArrivalOrder()
    order: list[str] = []
    first, second, other = line.place(A), line.place(A), line.place(B)
    released, two_went = asyncio.Event(), asyncio.Event()

    async def handle(name: str, place: object, after: asyncio.Event | None = None) -> None:
        assert hasattr(place, "wait")
        await place.wait()
        order.append(name)
        if len(order) == 2:
            two_went.set()
        if after is not None:
            await after.wait()
        place.release()  # type: ignore[attr-defined]

    tasks = [
        asyncio.create_task(handle("second", second)),
        asyncio.create_task(handle("other", other)),
        asyncio.create_task(handle("first", first, released)),
    ]
    # "other" and "first" go at once; "second" waits for "first" to be released.
    await two_went.wait()
    assert sorted(order) == ["first", "other"]
    released.set()
    await asyncio.gather(*tasks)
    assert order.index("second") > order.index("first")
    assert len(line) == 0  # idle chats are forgotten


async def test_a_place_given_up_while_waiting_passes_the_turn_on_only_when_it_comes() -> None:
    line = ArrivalOrder()
    first, gone, third = line.place(A), line.place(A), line.place(A)
    gone.release()  # cancelled before its turn
    assert not gone.done.done()  # so the third still waits: the first is being written
    first.release()
    await third.wait()  # the turn passed on through the place given up
    assert gone.done.done()
    third.release()
    assert len(line) == 0
