"""Arrival order: a chat's messages are handled in the order they arrived.

Adapters do platform work before a message reaches the router (a permission lookup, a typing
indicator), and those calls finish in any order; so does loading the chat. Without a place
taken at arrival, a later question could be written before an earlier one, or a question
before the /maxtokens sent just ahead of it. A message takes its place synchronously, before
its first await, and waits until the message before it in the same chat has been written (a
chat message: its turn is stored ahead; anything else: handled). Replies are then generated
in that order by the conversation's own per-chat line.
"""

from __future__ import annotations

import asyncio

from botkit.core.events import ChatKey

__all__ = ["ArrivalOrder", "Place"]


class Place:
    """One message's place in its chat's line."""

    def __init__(self, line: ArrivalOrder, key: ChatKey, before: asyncio.Future[None] | None):
        self._line = line
        self._key = key
        self._before = before
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        """Until the message before this one in the chat is written (or gone)."""
        if self._before is not None and not self._before.done():
            await asyncio.shield(self._before)

    def release(self) -> None:
        """This message is written (or dropped): the next one may go. A place released before
        its own turn came (cancelled while waiting) passes the turn on only when it comes."""
        if self.done.done():
            return
        if self._before is None or self._before.done():
            self.done.set_result(None)
        else:
            self._before.add_done_callback(lambda _: self._finish())
        self._line.forget(self._key, self.done)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self._line.forget(self._key, self.done)


class ArrivalOrder:
    """The last place of every chat with a message in flight (idle chats are forgotten)."""

    def __init__(self) -> None:
        self._last: dict[ChatKey, asyncio.Future[None]] = {}

    def place(self, key: ChatKey) -> Place:
        """Take the next place in key's line; call before any await on the message's way."""
        place = Place(self, key, self._last.get(key))
        self._last[key] = place.done
        return place

    def forget(self, key: ChatKey, done: asyncio.Future[None]) -> None:
        """Drop a chat whose last place is done (its line is empty)."""
        if self._last.get(key) is done and done.done():
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)
