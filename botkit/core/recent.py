"""Bounded memory of recent keys, for what a long-running bot must remember only for a while.

A bot that runs for months sees millions of message ids; remembering each forever is a leak.
`RecentKeys` keeps the newest `limit` (the oldest added is forgotten first). Caches of values
are cachetools' (`LRUCache`, bounded by count or, with getsizeof, by size).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import FIFOCache

__all__ = ["RecentKeys"]

K = TypeVar("K", bound=Hashable)


class RecentKeys(Generic[K]):
    """A set of at most limit keys: adding one more forgets the oldest."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._keys: FIFOCache[K, None] = FIFOCache(maxsize=limit)

    def add(self, key: K) -> bool:
        """Remember key; False if it was already known (it keeps its place)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)
