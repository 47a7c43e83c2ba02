"""Waiting for an adapter to finish with a platform event (a test helper, not in the adapters).

`adapter.on_handled = handled.add`, then `await handled.wait(update_id)`.
"""

from __future__ import annotations

import asyncio


class HandledLog:
    """The event ids an adapter reported as handled (answered or ignored)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, event_id: object) -> asyncio.Event:
        return self._events.setdefault(str(event_id), asyncio.Event())

    def add(self, event_id: str) -> None:
        """The adapter's on_handled hook."""
        self._event(event_id).set()

    def __contains__(self, event_id: object) -> bool:
        return self._event(event_id).is_set()

    async def wait(self, event_id: object) -> None:
        """Until the adapter is done with event_id."""
        await self._event(event_id).wait()
