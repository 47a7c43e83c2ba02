"""Platform-neutral events: what an adapter hands to the router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botkit.core.commands import CommandError

__all__ = ["Attachment", "AttachmentError", "ChatKey", "Incoming", "User"]

# The adapter's download of a file, in chunks (each platform's request: Telegram's getFile
# and file URL, Discord's signed CDN URL); it raises AttachmentError with a text fit for the
# user when the platform refuses or fails.
Chunks = Callable[[], AsyncGenerator[bytes, None]]


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


class AttachmentError(CommandError):
    """A file could not be read (too big, gone, the platform failed or hung); the message says
    which file, what went wrong and what to do. Unless a command catches it, it is the reply."""


def _size(count: int) -> str:
    return f"{count:,} bytes" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MB"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a user sent with the message: its name, size and type as the platform declares
    them, and its bytes on request (`await attachment.read(limit)`)."""

    name: str
    size: int | None  # as the platform declares it; None where it does not say
    mime: str | None
    chunks: Chunks = field(repr=False, compare=False)

    # A bound of its own, not left to callers: no plugin may hang a chat on a stalled download.
    async def read(self, limit: int, timeout: float = 60.0) -> bytes:  # noqa: ASYNC109
        """The file's bytes, at most limit of them. A file declared bigger is refused before
        anything is downloaded; one that turns out bigger stops the download at limit; the
        whole download takes at most timeout seconds. AttachmentError otherwise."""
        if self.size is not None and self.size > limit:
            raise AttachmentError(
                f"{self.name} is {_size(self.size)}; files up to {_size(limit)} are accepted"
            )
        data = bytearray()
        try:
            async with asyncio.timeout(timeout):
                stream = self.chunks()
                try:
                    async for chunk in stream:
                        data += chunk
                        if len(data) > limit:
                            raise AttachmentError(
                                f"{self.name} is over {_size(limit)} (more than the platform "
                                f"declared); files up to {_size(limit)} are accepted"
                            )
                finally:
                    await stream.aclose()
        except TimeoutError:
            raise AttachmentError(
                f"downloading {self.name} took over {timeout:g} s and was stopped; "
                f"send it again later"
            ) from None
        return bytes(data)


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
    # Files sent with the message (a Telegram document or photo, Discord attachments or a
    # slash command's file option); read only by a command that takes files.
    attachments: tuple[Attachment, ...] = ()

    @property
    def addressed_to_bot(self) -> bool:
        """Whether plain text in this message should get a reply (DM, mention or reply)."""
        return self.is_dm or self.mentioned or self.reply_to_bot
