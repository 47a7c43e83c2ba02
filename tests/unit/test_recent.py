"""Bounded memories: recent ids and a size-bounded cache forget the oldest first."""

from __future__ import annotations

import pytest

from botkit.core.recent import LruCache, RecentKeys


def test_recent_keys_keep_only_the_newest() -> None:
    seen: RecentKeys[int] = RecentKeys(3)
    assert [seen.add(i) for i in (1, 2, 2, 3, 4)] == [True, True, False, True, True]
    assert len(seen) == 3
    assert 1 not in seen  # the oldest went
    assert all(i in seen for i in (2, 3, 4))
    assert seen.add(1)  # forgotten, so new again


def test_recent_keys_need_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentKeys(0)


def test_lru_cache_is_bounded_by_size_not_count() -> None:
    cache: LruCache[str, list[int]] = LruCache(10, len)
    cache.put("a", [0] * 4)
    cache.put("b", [0] * 4)
    assert cache.get("a") == [0] * 4  # now a is the most recently used
    cache.put("c", [0] * 4)  # 12 > 10: b, the least recently used, goes
    assert cache.get("b") is None
    assert (cache.size, len(cache)) == (8, 2)
    cache.put("huge", [0] * 11)  # larger than the whole cache: not kept, nothing evicted
    assert (cache.get("huge"), cache.size) == (None, 8)
    cache.put("a", [0])  # replacing a value frees the old one's size
    assert cache.size == 5
