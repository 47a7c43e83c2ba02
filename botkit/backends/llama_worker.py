"""The channel from the llama.cpp worker thread to the event loop.

llama.cpp contexts are not thread-safe, so every call that touches one runs on a dedicated
worker thread; the loop receives finished pieces through a Mailbox.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable

from botkit.backends.base import Chunk

__all__ = ["Emit", "Mailbox", "log_failure"]

log = logging.getLogger(__name__)

# What the worker hands over: a chunk, an error to raise in the stream, or None (the end).
Emit = Callable[[Chunk | BaseException | None], None]


def log_failure(future: asyncio.Future[None]) -> None:
    """Done-callback for worker jobs nobody awaits: a failure is logged, not lost."""
    if not future.cancelled() and future.exception() is not None:
        log.error("llama.cpp worker job failed", exc_info=future.exception())


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
