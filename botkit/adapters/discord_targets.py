"""Where a Discord reply goes and how it grows: a channel message answering the user's, or a
deferred slash command's response and its follow-ups.

Both are `TextTarget`s for `ReplyStream`: a piece is sent once and edited as the reply grows,
and no piece ever pings anyone (allowed_mentions none on every message). An interaction token
lives 15 minutes; past `lifetime` the reply continues as plain channel messages.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import discord

from botkit.core.streaming import ReplyStream, TextTarget, split_message

__all__ = ["MAX_LENGTH", "NO_PINGS", "ChannelTarget", "InteractionTarget"]

MAX_LENGTH = 2000  # Discord's limit for a message's content
NO_PINGS = discord.AllowedMentions.none()


def _png_file(png: bytes) -> discord.File:
    return discord.File(io.BytesIO(png), filename="chart.png")


@dataclass
class _Sent:
    """A handle: where a piece of the reply lives, so it can be edited."""

    kind: str  # "original", "followup" or "channel"
    message: Any = None


def _reference(handle: _Sent) -> str:
    return f"{handle.message.channel.id}:{handle.message.id}"


@dataclass
class ChannelTarget(TextTarget):
    """Replies in a channel: the first piece answers the user's message, edits grow it."""

    channel: Any
    min_edit_interval: float
    reply_to: discord.Message | None = None
    max_length: int = MAX_LENGTH

    async def send(self, text: str) -> _Sent:
        """channel.send, never pinging; the first piece answers the user's message (if it is
        still there: Discord refuses a reply to a deleted message unless told not to fail)."""
        reference = self.reply_to.to_reference(fail_if_not_exists=False) if self.reply_to else None
        message = await self.channel.send(
            text, reference=reference, mention_author=False, allowed_mentions=NO_PINGS
        )
        self.reply_to = None
        return _Sent("channel", message)

    async def edit(self, handle: _Sent, text: str) -> None:
        """message.edit."""
        await handle.message.edit(content=text, allowed_mentions=NO_PINGS)

    def reference(self, handle: _Sent) -> str:
        """channel id:message id."""
        return _reference(handle)

    async def send_image(self, png: bytes, text: str) -> None:
        """The chart as an attachment, its text with it (or after it, when long)."""
        fits = len(text) <= self.max_length
        await self.channel.send(
            text if fits else None, file=_png_file(png), allowed_mentions=NO_PINGS
        )
        if not fits:
            await ReplyStream(self).finish(text)


@dataclass
class InteractionTarget(TextTarget):
    """Replies to a deferred slash command: the original response, then follow-ups."""

    interaction: discord.Interaction[Any]
    min_edit_interval: float
    lifetime: float
    max_length: int = MAX_LENGTH
    received: float = field(default_factory=time.monotonic)
    _original_used: bool = False

    @property
    def expired(self) -> bool:
        """Whether the interaction token can no longer be used."""
        return time.monotonic() - self.received > self.lifetime

    async def _channel_send(self, text: str) -> _Sent:
        channel: Any = self.interaction.channel
        message = await channel.send(text, allowed_mentions=NO_PINGS)
        return _Sent("channel", message)

    async def send(self, text: str) -> _Sent:
        """The first piece fills the deferred response; later pieces are follow-ups."""
        if self.expired:
            return await self._channel_send(text)
        if not self._original_used:
            self._original_used = True
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
            return _Sent("original")
        message = await self.interaction.followup.send(text, wait=True, allowed_mentions=NO_PINGS)
        return _Sent("followup", message)

    async def edit(self, handle: _Sent, text: str) -> None:
        """Edit a piece; once the token has expired, the piece continues as a channel message."""
        if handle.kind != "channel" and self.expired:
            moved = await self._channel_send(text)
            handle.kind, handle.message = moved.kind, moved.message
            return
        if handle.kind == "original":
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
        else:
            await handle.message.edit(content=text, allowed_mentions=NO_PINGS)

    def reference(self, handle: _Sent) -> str | None:
        """channel id:message id, for a piece sent as a plain channel message; the interaction's
        own messages can only be edited with its token, which is never stored."""
        return _reference(handle) if handle.kind == "channel" else None

    async def send_error(self, text: str) -> None:
        """Errors are ephemeral: only the user who asked sees them (split at 2,000 characters,
        like every message)."""
        pieces = split_message(text, self.max_length)
        if self.expired:
            for piece in pieces:
                await self._channel_send(piece)
            return
        if not self._original_used:
            self._original_used = True
            await self.interaction.delete_original_response()
        for piece in pieces:
            await self.interaction.followup.send(piece, ephemeral=True, allowed_mentions=NO_PINGS)

    async def send_image(self, png: bytes, text: str) -> None:
        """The chart as an attachment of the response, its text with it (or after, when long)."""
        fits = len(text) <= self.max_length
        content = text if fits else None
        if self.expired:
            channel: Any = self.interaction.channel
            await channel.send(content, file=_png_file(png), allowed_mentions=NO_PINGS)
        elif not self._original_used:
            self._original_used = True
            await self.interaction.edit_original_response(
                content=content, attachments=[_png_file(png)], allowed_mentions=NO_PINGS
            )
        else:
            await self.interaction.followup.send(
                content or "", file=_png_file(png), allowed_mentions=NO_PINGS
            )
        if not fits:
            await ReplyStream(self).finish(text)

    async def finish(self) -> None:
        """A command that said nothing still must not leave "thinking…" behind."""
        if not self._original_used and not self.expired:
            self._original_used = True
            await self.interaction.edit_original_response(content="Done.")
