"""Platform-neutral events: what an adapter hands to the router."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ChatKey", "Incoming", "User"]


@dataclass(frozen=True, slots=True)
class ChatKey:
    """Identifies one conversation: a platform and that platform's id for the chat or thread
    (platform_id, a str: not the database's int id of the chat, ChatRecord.id)."""

    platform: str
    platform_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.platform_id}"


@dataclass(frozen=True, slots=True)
class User:
    """The author of a message, as the platform names them."""

    id: str
    name: str
    can_change_settings: bool = True
    # May see the bot's internals in replies (model server addresses, file paths): the
    # configured owners and, in groups, admins. Everyone else sees them hidden.
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from a user, already stripped of platform details."""

    chat: ChatKey
    user: User
    text: str
    is_dm: bool = True
    mentioned: bool = False
    reply_to_bot: bool = False
    # A command whose arguments came typed (a Discord slash command's options, by parameter
    # name): they are validated as they are, never joined into text and parsed again.
    options: Mapping[str, Any] | None = None

    @property
    def addressed_to_bot(self) -> bool:
        """Whether plain text in this message should get a reply (DM, mention or reply)."""
        return self.is_dm or self.mentioned or self.reply_to_bot
