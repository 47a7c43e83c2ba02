"""The llama.cpp state cache: bounded in bytes, least recently used first; peeking for a
report leaves the order alone."""

from __future__ import annotations

from botkit.backends.state_cache import CachedState, StateCache


def state(size: int) -> CachedState:
    return CachedState(tokens=(1, 2), state=object(), size=size)


def test_the_least_recently_used_states_go_until_the_new_one_fits() -> None:
    cache = StateCache(10)
    a, b, c = state(4), state(4), state(4)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now a is the most recently used
    cache.put("c", c)  # 12 > 10: b goes
    assert (cache.get("b"), cache.size_bytes, len(cache)) == (None, 8, 2)


def test_peeking_does_not_make_a_state_recent() -> None:
    cache = StateCache(10)
    a = state(4)
    cache.put("a", a)
    cache.put("b", state(4))
    assert cache.peek("a") is a
    assert cache.peek("absent") is None
    cache.put("c", state(4))  # a is still the least recently used: it goes
    assert (cache.peek("a"), len(cache)) == (None, 2)


def test_a_state_larger_than_the_budget_is_not_kept_and_replaces_the_old_one() -> None:
    cache = StateCache(10)
    cache.put("a", state(4))
    cache.put("b", state(4))
    cache.put("a", state(11))
    assert (cache.get("a"), cache.size_bytes) == (None, 4)
    cache.put("b", state(1))  # replacing a state frees the old one's bytes
    assert cache.size_bytes == 1
    cache.discard("b")
    cache.discard("b")
    assert (cache.size_bytes, len(cache)) == (0, 0)


def test_a_cache_of_no_bytes_keeps_nothing() -> None:
    cache = StateCache(0)
    cache.put("a", state(1))
    assert (cache.get("a"), len(cache)) == (None, 0)
