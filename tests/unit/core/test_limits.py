"""The rate limiter: a sliding minute per user, remembering a bounded number of users (the
least recently seen are forgotten first)."""

from __future__ import annotations

from botkit.core.limits import RateLimiter


def test_a_user_over_the_limit_waits_for_the_oldest_request_to_leave_the_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.check("ann") for _ in range(2)] == [0.0, 0.0]
    now[0] = 15.0
    assert limiter.check("ann") == 45.0
    now[0] = 60.0
    assert limiter.check("ann") == 0.0


def test_the_least_recently_seen_user_is_forgotten_first() -> None:
    limiter = RateLimiter(1, clock=lambda: 0.0, max_keys=2)
    assert limiter.check("ann") == limiter.check("bob") == 0.0
    assert limiter.check("ann") == 60.0  # limited, and now the most recently seen
    assert limiter.check("cat") == 0.0  # bob, the least recently seen, is forgotten
    assert limiter.check("bob") == 0.0
    assert limiter.check("ann") == 0.0  # forgotten in turn (cat and bob came after)
