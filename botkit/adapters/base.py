"""The Adapter protocol: the seam between a chat platform and the router."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from botkit.core.router import Router
from botkit.core.streaming import ReplyTarget

__all__ = ["Adapter", "HandledHook", "ReplyTarget", "TokenRefused"]

# Called with a platform event's id (a Telegram update, a Discord message or interaction) once
# the adapter is done with it, whether it was answered or ignored: for observers (tests wait on
# it); the adapter keeps nothing.
HandledHook = Callable[[str], None]


class TokenRefused(Exception):
    """The platform refused the bot's token: restarting will not help (exit status 2)."""


class Adapter(Protocol):
    """A platform connection: started with the router, stopped on shutdown."""

    name: str
    # Set once connected and taking messages (READY=1 waits for every adapter's).
    ready: asyncio.Event

    async def start(self, router: Router) -> None:
        """Connect and deliver every incoming message to router until stopped or done."""

    async def stop_taking(self) -> None:
        """Take no new messages; where the platform keeps what is not taken (Telegram), leave
        it there for the next start. Replies in flight go on."""

    async def stop(self) -> None:
        """Disconnect (after stop_taking and the drain of replies in flight)."""
