"""What a plugin's command may use: the narrow, documented Context of the plugin API.

A plugin replies (text, an image, an error), reads the chat's settings and its history, asks
the chat's model for a completion (admitted, rate-limited and scheduled like any reply: a
plugin cannot jump the queue), and keeps its own state in a key-value store per chat and one
of its own. Everything else (the store, the scheduler, the backends, other chats) stays
private to botkit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botkit.backends.base import Message
from botkit.core.commands import CommandError
from botkit.core.events import Attachment
from botkit.core.settings import ChatSettings
from botkit.store.plugin_data import OWN_SPACE, Quota, QuotaExceeded

if TYPE_CHECKING:
    from botkit.core.context import Context

__all__ = ["HistoryMessage", "PluginContext", "PluginStore", "PluginStoreFull"]

_MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One message of the chat as the model sees it (oldest first)."""

    role: str  # "user" or "assistant"
    author: str | None  # a group member's name; None in a DM and for the bot
    text: str


class PluginStoreFull(CommandError):
    """A write would take the plugin over what it may keep in the chat ([plugins]
    data_max_rows, data_max_bytes); nothing was written. Unless the plugin catches it, the
    user is told, like any CommandError."""


class PluginStore:
    """A plugin's key-value store: JSON values (up to 64 KiB each) under string keys, kept in
    botkit's database across restarts, under the name the plugin was loaded as. ctx.data is
    the chat's (each chat its own keys), ctx.store the plugin's own (shared by every chat).
    Each holds at most [plugins] data_max_rows values and data_max_bytes bytes of JSON."""

    def __init__(self, ctx: Context, plugin: str, chat_id: int) -> None:
        self._ctx = ctx
        self._plugin = plugin
        self._chat_id = chat_id

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under key, or default."""
        data = self._ctx.store.plugin_data
        value = await data.get(self._plugin, self._chat_id, self._check(key))
        return default if value is None else value

    async def set(self, key: str, value: Any) -> None:
        """Store a JSON value (None deletes the key)."""
        await self.update(key, lambda _: value)

    async def delete(self, key: str) -> None:
        """Forget key."""
        await self.set(key, None)

    async def update(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace key's value by change(value) (default if none); returns the new
        value. Two updates of one key at once, from one process or two, never lose one:
        `await ctx.data.update("rolls", lambda n: n + 1, 0)`. change runs inside the
        database transaction: keep it quick and pure. None deletes the key."""
        plugins = self._ctx.services.plugins
        quota = Quota(plugins.data_max_rows, plugins.data_max_bytes)
        data = self._ctx.store.plugin_data
        try:
            return await data.update(
                self._plugin, self._chat_id, self._check(key),
                lambda current: change(default if current is None else current), quota,
            )  # fmt: skip
        except QuotaExceeded as exc:
            where = "its own space" if self._chat_id == OWN_SPACE else "this chat"
            setting = "data_max_rows" if exc.what == "values" else "data_max_bytes"
            raise PluginStoreFull(
                f"the {self._plugin} plugin's data in {where} is full: this would make "
                f"{exc.kept:,} {exc.what}, over the {exc.limit:,} allowed ([plugins] "
                f"{setting}); nothing was changed"
            ) from None

    @staticmethod
    def _check(key: str) -> str:
        if not 1 <= len(key) <= _MAX_KEY:
            raise ValueError(f"a plugin key is 1 to {_MAX_KEY} characters")
        return key


class PluginContext:
    """The first argument of every plugin command."""

    def __init__(self, ctx: Context, plugin: str, *, counted: bool = False) -> None:
        self._ctx = ctx
        self._counted = counted  # the command itself was counted against the rate limit
        self.data = PluginStore(ctx, plugin, ctx.chat.id)  # this chat's
        self.store = PluginStore(ctx, plugin, OWN_SPACE)  # the plugin's own, every chat's

    @property
    def user_name(self) -> str:
        """The sender's display name."""
        return self._ctx.incoming.user.name

    @property
    def is_dm(self) -> bool:
        """Whether this is a private chat with the bot."""
        return self._ctx.incoming.is_dm

    @property
    def chat_id(self) -> str:
        """This conversation's id ("platform:id", e.g. "telegram:BOT/CHAT"), stable across
        restarts."""
        return str(self._ctx.chat.key)

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        """The files sent with the command (for a command declared with takes_file=True):
        each has name, size and mime, and `await attachment.read(limit)` for its bytes."""
        return self._ctx.incoming.attachments

    @property
    def settings(self) -> ChatSettings:
        """The chat's settings (read-only)."""
        return self._ctx.settings

    async def reply(self, text: str) -> None:
        """Send text (split at the platform's limit)."""
        await self._ctx.reply(text)

    async def reply_image(self, png: bytes, text: str) -> None:
        """Send a PNG with its text where the platform shows images, else the text alone."""
        await self._ctx.reply_image(png, text)

    async def reply_error(self, text: str) -> None:
        """Tell the user what went wrong (privately where the platform can)."""
        await self._ctx.reply_error(text)

    async def history(self) -> list[HistoryMessage]:
        """The messages the model sees in this chat now, oldest first (a copy)."""
        ctx = self._ctx
        rows = await ctx.planner.history(ctx.chat, ctx.backend)
        return [HistoryMessage(r.role, r.author, r.content) for r in rows]

    async def generate(
        self, prompt: str, *, persona: str | None = None, max_tokens: int | None = None
    ) -> str:
        """The chat's model's answer to prompt (with the chat's sampling options, persona
        unless given), not stored in the history. Counts against the user's rate limit and
        waits for the model like a reply."""
        ctx = self._ctx
        if max_tokens is not None and not 1 <= max_tokens <= ctx.settings.max_tokens:
            raise CommandError(f"max_tokens must be 1 to {ctx.settings.max_tokens}")
        if self._counted:
            self._counted = False  # the command's own count covers its first generation
        else:
            ctx.services.count_request(ctx.incoming)
        system = ctx.settings.persona if persona is None else persona
        messages: list[Message] = [
            {"role": "system", "content": system},
            {"role": "user", "content": prompt},
        ]
        return await ctx.conversation.complete(ctx, messages, max_tokens)
