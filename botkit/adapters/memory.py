"""An in-memory adapter target that records what the bot sends: a test fake shipped with botkit.

Use it in plugin tests: `target = MemoryTarget()`, hand `Incoming` messages to
`bot.router.handle(incoming, target)`, then read `target.messages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botkit.core.streaming import TextTarget

__all__ = ["MemoryTarget"]


@dataclass
class MemoryTarget(TextTarget):
    """Records sent messages and edits; message i's current text is messages[i]."""

    max_length: int = 2000
    min_edit_interval: float = 0.0
    messages: list[str] = field(default_factory=list)
    edits: int = 0

    async def send(self, text: str) -> int:
        """Record a new message; its index is the handle."""
        self.messages.append(text)
        return len(self.messages) - 1

    async def edit(self, handle: int, text: str) -> None:
        """Replace message handle's text."""
        self.messages[handle] = text
        self.edits += 1

    @property
    def text(self) -> str:
        """All messages joined by newlines."""
        return "\n".join(self.messages)

    def clear(self) -> None:
        """Forget what was recorded."""
        self.messages.clear()
        self.edits = 0
