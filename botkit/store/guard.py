"""The one-process-per-chat guard: a chat that another process writes too is no longer cached.

The caches (botkit.store.caches) are right only while this process writes every row of a chat
(shards split chats). That is checked at no extra cost: finishing a turn returns the chat's
newest row before the turn's question (botkit.store.turns), and a row there newer than the last
one this process wrote means another process serves the chat too. Its caches would go stale,
so they are no longer used, with an error in the log.
"""

from __future__ import annotations

import logging

from cachetools import LRUCache

from botkit.store.caches import Caches

__all__ = ["OwnerGuard"]

log = logging.getLogger(__name__)


class OwnerGuard:
    """What this process wrote in its recent chats, and the check against it."""

    def __init__(self, caches: Caches, size: int) -> None:
        self._caches = caches
        # Chat id: the newest row this process wrote there (for the recently written chats).
        self._last_written: LRUCache[int, int] = LRUCache(maxsize=size)
        # The turns in flight: reply id: (question id, the chat's newest row before it).
        self.in_flight: dict[int, tuple[int, int | None]] = {}

    def wrote(self, chat_id: int, row_id: int) -> None:
        """This process wrote row_id, the chat's newest row."""
        self._last_written[chat_id] = row_id

    def began(self, chat_id: int, question_id: int | None, reply_id: int) -> None:
        """A turn wrote its question (None for a /retry) and its empty reply."""
        if question_id is not None:
            self.in_flight[reply_id] = (question_id, self._last_written.get(chat_id))
        self.wrote(chat_id, reply_id)

    def finishing(self, reply_id: int) -> tuple[int, int | None]:
        """The turn of reply_id ends: its question's id and the row this process last wrote in
        the chat before it ((0, None) if unknown: then nothing is checked)."""
        return self.in_flight.pop(reply_id, (0, None))

    def moved(self, chat_id: int, reply_id: int, next_id: int) -> None:
        """A tool round: the turn's reply is now row next_id, written after its calls."""
        found = self.in_flight.pop(reply_id, None)
        if found is not None:
            self.in_flight[next_id] = found
        self.wrote(chat_id, next_id)

    def dropped(self, reply_id: int) -> None:
        """The turn of reply_id ended without a reply."""
        self.in_flight.pop(reply_id, None)

    def check(self, chat_id: int, before: int | None, newest: int | None) -> None:
        """newest: the chat's newest row before the turn's question, as the database has it;
        before: the newest this process had written there. A newer row is another process's."""
        if before is None or newest is None or newest <= before:
            return
        if self._caches.stop_caching(chat_id):
            log.error(
                "chat %d is also written by another botkit process (message %d appeared "
                "between this process's turns). Each chat must be served by one process: "
                "split chats by platform, bot or Discord shard. This process now reads the "
                "chat from the database on every turn; the two processes' turns may "
                "interleave.",
                chat_id,
                newest,
            )
