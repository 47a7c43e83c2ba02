"""The channel from the llama.cpp worker thread to the event loop.

llama.cpp contexts are not thread-safe, so every call that touches one runs on a dedicated
worker thread; the loop receives finished pieces through a Mailbox.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable

from botkit.backends.base import BackendUnavailable, Chunk, Usage

__all__ = ["Emit", "Mailbox", "receive"]

log = logging.getLogger(__name__)

# What the worker hands over: a chunk, an error to raise in the stream, or None (the end).
Emit = Callable[[Chunk | BaseException | None], None]


class Mailbox:
    """Hands items from the worker thread to the event loop, waking the loop once per batch.

    One wake-up per token would make the loop compete with the generating thread for the GIL
    on every token; batching keeps the reply stream's overhead off the model's speed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Chunk | BaseException | None] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._ready = asyncio.Event()

    def put(self, item: Chunk | BaseException | None) -> None:
        """Called from the worker thread; never raises there (a worker loop serves other
        chats too)."""
        with self._lock:
            self._items.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the event loop is closed: nobody waits for this stream any more
            log.debug("a reply's event loop closed before its stream ended")

    async def take_all(self) -> list[Chunk | BaseException | None]:
        """Everything put since the last call (waits for at least one item)."""
        await self._ready.wait()
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._scheduled = False
            self._ready.clear()
        return items


async def receive(
    mailbox: Mailbox, stop: threading.Event, stall: float, backend: str
) -> AsyncIterator[Chunk]:
    """A job's pieces as the worker hands them over, one chunk per batch, until its end.

    Every wait is bounded by stall seconds: a step that never returns must not hold the reply
    (and its chat) for ever. Closed early, the job is told to stop and its end awaited, so its
    slot is not handed on while its tokens are still being decoded.
    """
    finished = False
    try:
        while not finished:
            text: list[str] = []
            usage: Usage | None = None
            error: BaseException | None = None
            try:
                items = await asyncio.wait_for(mailbox.take_all(), stall)
            except TimeoutError:
                raise BackendUnavailable(
                    f"llama.cpp produced nothing for {stall:.0f} s (stall_timeout); the reply "
                    "was stopped"
                ) from None
            for item in items:
                if item is None:
                    finished = True  # seen even after an error: nothing is left to wait for
                elif isinstance(item, BaseException):
                    error = error or item
                else:
                    text.append(item.text)
                    usage = item.usage or usage
            if error is not None:
                raise error
            if text or usage:
                yield Chunk("".join(text), usage=usage)
    finally:
        if not finished:
            stop.set()
            try:
                await asyncio.shield(asyncio.wait_for(_ended(mailbox), stall))
            except TimeoutError:
                log.error("%s: a stopped reply did not end within %.0f s", backend, stall)


async def _ended(mailbox: Mailbox) -> None:
    while None not in await mailbox.take_all():
        pass
