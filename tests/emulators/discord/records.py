"""What the emulator records of the bot's answers, for tests to read: every message it sent
(`MessageRecord`) and every slash command it was sent with all it answered (`InteractionRecord`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tests.emulators.discord.constants import JSON

__all__ = ["InteractionRecord", "MessageRecord"]


@dataclass
class MessageRecord:
    """A message the bot sent (channel message, interaction original or follow-up), as it is now.

    `would_ping` is sticky: true once any version of the message (as sent or edited) would
    have notified someone under the `allowed_mentions` sent with it (none sent = Discord's
    default, which pings). `history` holds every content the message had, oldest first.
    """

    id: int
    channel_id: int
    content: str
    via: Literal["channel", "followup", "original"] = "channel"
    edits: int = 0
    allowed_mentions: dict[str, Any] | None = None
    would_ping: bool = False
    reference: int | None = None
    ephemeral: bool = False
    deleted: bool = False
    loading: bool = False
    interaction_id: str | None = None
    history: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)


@dataclass
class InteractionRecord:
    """A slash command the emulator dispatched and everything the bot answered to it."""

    id: str
    token: str
    name: str
    channel_id: int
    user_id: int
    created: float  # time.monotonic() when INTERACTION_CREATE was dispatched
    payload: JSON = field(repr=False)
    callbacks: list[int] = field(default_factory=list)
    ephemeral_defer: bool = False
    original: MessageRecord | None = None
    followups: list[MessageRecord] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        """Whether the bot answered the interaction (any callback)."""
        return bool(self.callbacks)

    @property
    def original_content(self) -> str | None:
        """The current content of the original response (None: there is none)."""
        if self.original is None or self.original.deleted:
            return None
        return self.original.content

    @property
    def original_edits(self) -> int:
        """How often the original response was edited."""
        return 0 if self.original is None else self.original.edits
