"""The Context a command handler receives: the message, the chat, its settings, a way to reply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botkit.core.events import Incoming
from botkit.core.settings import ChatSettings
from botkit.core.streaming import ReplyStream, ReplyTarget
from botkit.store.repository import ChatRecord

if TYPE_CHECKING:
    from botkit.backends.base import Backend
    from botkit.core.app import Bot

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a handler may use; the one argument every command gets first."""

    bot: Bot
    incoming: Incoming
    chat: ChatRecord
    settings: ChatSettings
    target: ReplyTarget
    # Called once the message is safely stored: a platform may confirm delivery only then.
    on_accepted: Callable[[], None] | None = None

    @property
    def backend(self) -> Backend:
        """The backend this chat uses."""
        return self.bot.backends[self.settings.backend]

    def accepted(self) -> None:
        """The message is committed to the store (or needs no storing)."""
        if self.on_accepted is not None:
            self.on_accepted()

    def _shown(self, text: str) -> str:
        """text as this user may see it: internals hidden unless they are trusted."""
        return text if self.incoming.user.trusted else self.bot.hide_internals(text)

    async def reply(self, text: str) -> None:
        """Send text to the chat (split at the platform's limit)."""
        stream = ReplyStream(self.target)
        await stream.finish(self._shown(text))

    async def reply_image(self, png: bytes, text: str) -> None:
        """Send a picture with its text where the platform can show one, else just the text."""
        await self.target.send_image(png, self._shown(text))

    async def reply_error(self, text: str) -> None:
        """Tell the user what went wrong: privately where the platform can (Discord)."""
        await self.target.send_error(self._shown(f"⚠ {text}"))
