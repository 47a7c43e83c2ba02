"""A per-conversation cache of llama.cpp context states, bounded in bytes (least recent goes).

One llama.cpp context serves every chat in turn. When chat A's turn follows chat B's, the
context holds B's tokens; restoring A's saved state lets llama.cpp reuse A's evaluated prefix
instead of paying a cold prefill of A's whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import Cache, LRUCache

__all__ = ["CachedState", "StateCache", "common_prefix", "reuse_point"]


@dataclass(frozen=True, slots=True)
class CachedState:
    """A saved context: the tokens it holds, the llama.cpp state blob and its size, and how
    many of the tokens were evaluated in the canonical batch shape (see LlamaCppBackend)."""

    tokens: tuple[int, ...]
    state: Any
    size: int
    canonical: int = 0


class StateCache:
    """Maps a conversation key to its last context state, within a byte budget."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._entries: LRUCache[str, CachedState] = LRUCache(
            maxsize=capacity_bytes, getsizeof=lambda entry: entry.size
        )

    @property
    def size_bytes(self) -> int:
        """Bytes held by all cached states."""
        return int(self._entries.currsize)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedState | None:
        """The state saved for key, marking it recently used."""
        return self._entries.get(key)

    def peek(self, key: str) -> CachedState | None:
        """The state saved for key, leaving the eviction order alone (for reports)."""
        # Cache's own read: LRUCache's would make key the most recently used.
        return Cache.__getitem__(self._entries, key) if key in self._entries else None

    def put(self, key: str, entry: CachedState) -> None:
        """Save key's state, evicting the least recently used ones past the budget."""
        self.discard(key)
        if entry.size <= self.capacity_bytes:  # a larger one is not kept
            self._entries[key] = entry

    def discard(self, key: str) -> None:
        """Forget key's state (its conversation was reset)."""
        self._entries.pop(key, None)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens a and b share (how much of a saved context a prompt reuses)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def reuse_point(common: int, prompt_length: int) -> int:
    """How many leading prompt tokens to keep of a context sharing `common` with it: at least
    the final token is evaluated again (its logits start the reply), and the piece before it
    is never a single token (one-token batches round differently: see llama_batch)."""
    reuse = min(common, prompt_length - 1)
    if prompt_length - 1 - reuse == 1:
        reuse -= 1
    return max(reuse, 0)
