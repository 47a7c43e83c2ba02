"""The router: a command goes to its handler, text addressed to the bot to the conversation.

Every failure ends as a clear reply in the chat; nothing a user sends can stop the bot.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from botkit.backends.base import BackendError
from botkit.core.arrival import ArrivalOrder, Place
from botkit.core.commands import CommandError
from botkit.core.context import Context
from botkit.core.conversation import NothingToRetry
from botkit.core.events import Incoming
from botkit.core.limits import RateLimiter
from botkit.core.plugin_context import PluginContext
from botkit.core.streaming import ReplyTarget

if TYPE_CHECKING:
    from botkit.core.app import Bot

__all__ = ["Router"]

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 16000


class Router:
    """Dispatches Incoming messages."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.accepting = True
        self._active: set[asyncio.Task[None]] = set()
        self._limiter = RateLimiter(bot.config.service.rate_limit_per_minute)
        self.arrivals = ArrivalOrder()

    @property
    def in_flight(self) -> int:
        """Messages being handled right now."""
        return len(self._active)

    async def drain(self, grace: float) -> int:
        """Stop taking messages (a message that still comes is told to send again later); let
        those in flight finish for up to grace seconds, then cancel the rest (their replies are
        stored as interrupted). Returns how many were cut."""
        self.accepting = False
        pending = set(self._active)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    async def context(
        self,
        incoming: Incoming,
        target: ReplyTarget,
        on_accepted: Callable[[], None] | None = None,
    ) -> Context:
        """Build the handler context for a message (loads the chat and its settings)."""
        chat = await self.bot.repo.chat(incoming.chat)
        settings = self.bot.settings_for(chat)
        return Context(self.bot, incoming, chat, settings, target, on_accepted)

    async def handle(
        self,
        incoming: Incoming,
        target: ReplyTarget,
        on_accepted: Callable[[], None] | None = None,
        place: Place | None = None,
    ) -> None:
        """Handle one message; replies go to target.

        on_accepted is called once the message is safely stored (a chat message: when its
        turn is written ahead), or once handling ends for anything that stores nothing, so a
        platform can confirm delivery no earlier than that. place is the message's place in
        its chat's arrival order (`arrivals.place`), taken by an adapter that awaits anything
        before calling this; without one, the place is taken here.
        """
        done = False
        if place is None:
            place = self.arrivals.place(incoming.chat)

        def accept() -> None:
            nonlocal done
            place.release()
            if not done and on_accepted is not None:
                done = True
                on_accepted()

        try:
            await place.wait()
            text = incoming.text.strip()
            if not text:
                return
            if not self.accepting:
                # Shutting down; the platform could not keep this message for the next start.
                ctx = await self.context(incoming, target)
                await ctx.reply_error("the bot is restarting; send that again in a moment")
                return
            self.bot.metrics.messages.labels(incoming.chat.platform).inc()
            task = asyncio.current_task()
            if task is None:
                await self._handle(incoming, target, text, accept)
                return
            self._active.add(task)
            try:
                await self._handle(incoming, target, text, accept)
            finally:
                self._active.discard(task)
        finally:
            accept()

    async def _handle(
        self, incoming: Incoming, target: ReplyTarget, text: str, accept: Callable[[], None]
    ) -> None:
        ctx = await self.context(incoming, target, accept)
        try:
            if text.startswith("/"):
                await self._command(ctx, text)
            elif incoming.addressed_to_bot:
                await self.chat(ctx, text)
        except (CommandError, BackendError, NothingToRetry) as exc:
            self.bot.metrics.errors.labels(type(exc).__name__).inc()
            await ctx.reply_error(str(exc))
        except Exception:
            self.bot.metrics.errors.labels("internal").inc()
            log.exception("unexpected error handling a message in %s", incoming.chat)
            await ctx.reply_error(
                "Something went wrong on our side; the error is in the bot's log."
            )

    async def chat(self, ctx: Context, text: str) -> None:
        """Plain chat: validate the length, then let the conversation answer."""
        if len(text) > MAX_MESSAGE_CHARS:
            raise CommandError(
                f"your message is {len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}"
            )
        self.check_rate(ctx)
        await self.bot.conversation.respond(ctx, text)

    def check_rate(self, ctx: Context) -> None:
        """Refuse a user over the per-user rate limit (chat and every command that runs the
        model count alike). The console is exempt: it is the owner at their own terminal
        (piped lines come as fast as they are read), and the limits are for platforms."""
        if ctx.incoming.chat.platform == "console":
            return
        user = ctx.incoming.user
        wait = self._limiter.check(f"{ctx.incoming.chat.platform}:{user.id}")
        if wait:
            raise CommandError(
                f"you are sending messages faster than {self._limiter.per_minute} a minute; "
                f"try again in {wait:.0f} s"
            )

    async def _command(self, ctx: Context, text: str) -> None:
        head, _, args = text[1:].partition(" ")
        name = head.split("@", 1)[0].lower()
        command = self.bot.registry.get(name)
        if command is None:
            close = difflib.get_close_matches(name, self.bot.registry.names(), n=1)
            hint = f" Did you mean /{close[0]}?" if close else ""
            raise CommandError(f"unknown command /{name}.{hint} /help lists the commands.")
        # Without arguments a settings command only shows the value, which anyone may see.
        guarded = command.changes_history or (command.changes_settings and args.strip())
        if guarded and not ctx.incoming.user.can_change_settings:
            raise CommandError(
                f"only people allowed to change this chat's settings can use /{name}"
            )
        options = ctx.incoming.options
        values = command.parse(args) if options is None else command.check(options)
        command.check_attachments(len(ctx.incoming.attachments))
        if command.uses_model:
            self.check_rate(ctx)
        if not (command.writes_ahead or command.changes_history):
            # Answered in arrival order: after the chat's earlier replies, seeing what they
            # and earlier commands stored. The chat's next message waits for this one (its
            # place is released when handling ends). /reset and /retry act on the replies
            # themselves (a /retry queues as a turn).
            await self.bot.conversation.after_earlier_turns(ctx.chat.id)
            ctx = await self.context(ctx.incoming, ctx.target, ctx.on_accepted)
        if command.internal:
            result = await command.handler(ctx, **values)
        else:
            plugin_ctx = PluginContext(ctx, command.plugin, counted=command.uses_model)
            result = await command.handler(plugin_ctx, **values)
        if result:
            await ctx.reply(result)
