"""Per-user rate limiting: a sliding one-minute window of requests per user."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["RateLimiter"]

_WINDOW = 60.0


class RateLimiter:
    """Allows at most `per_minute` requests per key in any 60 seconds (0 = no limit)."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._max_keys = max_keys
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, key: str) -> float:
        """Record a request; 0 if allowed, else the seconds until the next one would be."""
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        times = self._seen.setdefault(key, deque())
        self._seen.move_to_end(key)
        while times and now - times[0] >= _WINDOW:
            times.popleft()
        if len(times) >= self.per_minute:
            return _WINDOW - (now - times[0])
        times.append(now)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)
        return 0.0
