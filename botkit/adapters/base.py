"""The Adapter protocol: the seam between a chat platform and the router."""

from __future__ import annotations

from typing import Protocol

from botkit.core.router import Router
from botkit.core.streaming import ReplyTarget

__all__ = ["Adapter", "ReplyTarget"]


class Adapter(Protocol):
    """A platform connection: started with the router, stopped on shutdown."""

    name: str

    async def start(self, router: Router) -> None:
        """Connect and deliver every incoming message to router until stopped or done."""

    async def stop_taking(self) -> None:
        """Take no new messages; where the platform keeps what is not taken (Telegram), leave
        it there for the next start. Replies in flight go on."""

    async def stop(self) -> None:
        """Disconnect (after stop_taking and the drain of replies in flight)."""
