"""Where a Telegram reply goes: plain-text messages in one chat or forum topic, grown by
editMessageText and split at 4,096 characters.

No parse mode, so Markdown characters in model output can never cause a parse error; the pace of
edits is the chat's (`min_edit_interval`), and 429s are waited out by PTB's AIORateLimiter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telegram import Message, ReplyParameters
from telegram.error import BadRequest

from botkit.core.streaming import ReplyStream, TextTarget

__all__ = ["CAPTION_LENGTH", "MAX_LENGTH", "TelegramTarget"]

MAX_LENGTH = 4096  # Bot API: a message's text, after entities parsing
CAPTION_LENGTH = 1024  # Bot API: a photo's caption


@dataclass
class TelegramTarget(TextTarget):
    """Sends and edits plain-text messages in one chat (or forum topic)."""

    bot: Any
    chat_id: int
    thread_id: int | None
    reply_to: int | None
    min_edit_interval: float
    max_length: int = MAX_LENGTH

    async def send(self, text: str) -> int:
        """sendMessage; the handle is the message id."""
        reply = (
            ReplyParameters(self.reply_to, allow_sending_without_reply=True)
            if self.reply_to
            else None
        )
        message: Message = await self.bot.send_message(
            self.chat_id, text, message_thread_id=self.thread_id, reply_parameters=reply
        )
        self.reply_to = None  # only the first piece answers the user's message
        return message.message_id

    async def edit(self, handle: int, text: str) -> None:
        """editMessageText; an edit that changes nothing Telegram can see is not an error."""
        try:
            await self.bot.edit_message_text(text, chat_id=self.chat_id, message_id=handle)
        except BadRequest as exc:
            # Telegram trims the text before comparing, so a reply that only grew by
            # whitespace is "not modified" (a 400), though our copy differs.
            if "not modified" not in exc.message.lower():
                raise

    def reference(self, handle: int) -> str:
        """The message id (the chat is the conversation's own)."""
        return str(handle)

    async def send_image(self, png: bytes, text: str) -> None:
        """sendPhoto; text that does not fit a caption follows as messages."""
        fits = len(text) <= CAPTION_LENGTH
        await self.bot.send_photo(
            self.chat_id,
            photo=png,
            caption=text if fits else None,
            message_thread_id=self.thread_id,
        )
        if not fits:
            await ReplyStream(self).finish(text)
