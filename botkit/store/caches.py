"""What the store keeps in memory between turns: recently used chats and their kept windows.

Each is a least-recently-used cache of at most `size` chats. The store's own writes update them
(a turn's rows join the cached window as they are written), so a turn reads back nothing from
the database that this process wrote. That holds only while each chat is served by one
process: a chat that botkit.store.guard finds written by another is no longer cached.
"""

from __future__ import annotations

from collections.abc import Callable

from cachetools import LRUCache

from botkit.core.events import ChatKey
from botkit.core.recent import RecentKeys
from botkit.store.records import ChatRecord, StoredMessage

__all__ = ["Caches"]


class Caches:
    """The chat and window caches of one repository."""

    def __init__(self, size: int) -> None:
        # Chats by key, records by id: the writes that change a chat name it by id.
        self._ids: LRUCache[ChatKey, int] = LRUCache(maxsize=size)
        self._chats: LRUCache[int, ChatRecord] = LRUCache(maxsize=size)
        # Chat id: (the window's first id, its messages oldest first).
        self._windows: LRUCache[int, tuple[int, list[StoredMessage]]] = LRUCache(maxsize=size)
        self._uncached: RecentKeys[int] = RecentKeys(size)  # written by another process too

    def chat(self, key: ChatKey) -> ChatRecord | None:
        """The cached chat for key, if any."""
        chat_id = self._ids.get(key)
        if chat_id is None or chat_id in self._uncached:
            return None
        record = self._chats.get(chat_id)
        return record if record is not None and record.key == key else None

    def keep_chat(self, record: ChatRecord) -> ChatRecord:
        """Cache a chat (the least recently used go first); returns it."""
        self._ids[record.key] = record.id
        self._chats[record.id] = record
        return record

    def change_chat(self, chat_id: int, change: Callable[[ChatRecord], ChatRecord]) -> None:
        """Replace the cached chat by change(it), if it is cached."""
        record = self._chats.get(chat_id)
        if record is not None:
            self._chats[chat_id] = change(record)

    def window(self, chat_id: int, start_id: int) -> list[StoredMessage] | None:
        """The chat's cached messages from start_id on (a copy), if the cache holds them all."""
        cached = self._windows.get(chat_id)
        if cached is None or cached[0] > start_id:
            return None
        if cached[0] == start_id:  # the usual turn: the window did not move
            return list(cached[1])
        kept = [m for m in cached[1] if m.id >= start_id]
        self._windows[chat_id] = (start_id, kept)
        return list(kept)

    def keep_window(self, chat_id: int, start_id: int, messages: list[StoredMessage]) -> None:
        """Cache a chat's messages from start_id on (unless another process writes it too)."""
        if chat_id not in self._uncached:
            self._windows[chat_id] = (start_id, messages)

    def rows(self, chat_id: int) -> list[StoredMessage] | None:
        """The cached window's own list of messages, for a write to bring up to date."""
        cached = self._windows.get(chat_id)
        return None if cached is None else cached[1]

    def forget(self, chat_id: int) -> None:
        """Drop the chat and its window (the next reads go to the database)."""
        self._windows.pop(chat_id, None)
        self._chats.pop(chat_id, None)

    def stop_caching(self, chat_id: int) -> bool:
        """Forget the chat and cache it no more; False if that was already so."""
        self.forget(chat_id)
        return self._uncached.add(chat_id)

    def clear_windows(self) -> None:
        """Forget every cached window (the chats stay)."""
        self._windows.clear()

    def clear(self) -> None:
        """Forget every cached chat and window."""
        self._ids.clear()
        self._chats.clear()
        self._windows.clear()
