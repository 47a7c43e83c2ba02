"""Bounded memories: recent ids forget the oldest first."""

from __future__ import annotations

import pytest

from botkit.core.recent import RecentKeys


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
