"""Per-user rate limiting: a sliding one-minute window of requests per user."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from cachetools import LRUCache

__all__ = ["RateLimiter"]

_WINDOW = 60.0


class RateLimiter:
    """Allows at most `per_minute` requests per key in any 60 seconds (0 = no limit)."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        # Each user's recent requests; the least recently seen users are forgotten first.
        self._seen: LRUCache[str, deque[float]] = LRUCache(maxsize=max_keys)

    def check(self, key: str) -> float:
        """Record a request; 0 if allowed, else the seconds until the next one would be."""
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        times = self._seen.get(key, deque())  # get: now the most recently seen
        while times and now - times[0] >= _WINDOW:
            times.popleft()
        if len(times) >= self.per_minute:
            return _WINDOW - (now - times[0])
        times.append(now)
        self._seen[key] = times
        return 0.0
