"""Bounded memory of recent keys, for what a long-running bot must remember only for a while.

A bot that runs for months sees millions of message ids; remembering each forever is a leak.
`RecentKeys` keeps the newest `limit` (oldest forgotten first), `LruCache` keeps values up to a
total size (least recently used forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LruCache", "RecentKeys"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentKeys(Generic[K]):
    """A set of at most limit keys: adding one more forgets the oldest."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._keys: OrderedDict[K, None] = OrderedDict()

    def add(self, key: K) -> bool:
        """Remember key; False if it was already known."""
        if key in self._keys:
            return False
        self._keys[key] = None
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class LruCache(Generic[K, V]):
    """A mapping whose values' sizes (by size_of) add up to at most capacity."""

    def __init__(self, capacity: int, size_of: Callable[[V], int]) -> None:
        self.capacity = capacity
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.size = 0

    def get(self, key: K) -> V | None:
        """The value for key (now the most recently used), or None."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V) -> None:
        """Store value; the least recently used go until everything fits (a value larger than
        the capacity is not kept)."""
        size = self._size_of(value)
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old[1]
        if size > self.capacity:
            return
        self._items[key] = (value, size)
        self.size += size
        while self.size > self.capacity:
            _, (_, dropped) = self._items.popitem(last=False)
            self.size -= dropped

    def __len__(self) -> int:
        return len(self._items)
