"""The router: a command goes through the middleware to its handler, text addressed to the
bot to the conversation.

Every failure ends as a clear reply in the chat; nothing a user sends can stop the bot.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Callable
from typing import Any

from botkit.backends.base import BackendError
from botkit.core.arrival import ArrivalOrder, Place
from botkit.core.commands import Command, CommandError
from botkit.core.context import Context, Services
from botkit.core.conversation import NothingToRetry
from botkit.core.events import Incoming
from botkit.core.middleware import Middleware, run_chain
from botkit.core.plugin_context import PluginContext
from botkit.core.streaming import ReplyTarget
from botkit.core.turn_source import TurnSource
from botkit.metrics import Metrics

__all__ = ["Router"]

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 16000


class Router:
    """Dispatches Incoming messages.

    count_request counts a chat message against its sender's rate limit (the commands that
    use the model are counted by the rate limit middleware, registered with use()).
    """

    def __init__(
        self,
        services: Services,
        *,
        metrics: Metrics | None = None,
        count_request: Callable[[Incoming], None] | None = None,
    ) -> None:
        self._services = services
        self._metrics = metrics or Metrics()
        self._count_request = count_request or services.count_request
        self.middlewares: list[Middleware] = []
        self.accepting = True
        self._active: set[asyncio.Task[None]] = set()
        self.arrivals = ArrivalOrder()

    def use(self, middleware: Middleware) -> None:
        """Run middleware around every command handler, after those registered before it."""
        self.middlewares.append(middleware)

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
        services = self._services
        chat = await services.store().chat(incoming.chat)
        settings = services.conversation.settings_for(chat)
        return Context(incoming, chat, settings, target, services, on_accepted)

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
            if not text and not incoming.attachments:
                return  # (a picture alone is a question)
            if not self.accepting:
                # Shutting down; the platform could not keep this message for the next start.
                ctx = await self.context(incoming, target)
                await ctx.reply_error("the bot is restarting; send that again in a moment")
                return
            self._metrics.messages.labels(incoming.chat.platform).inc()
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
                await self.converse(ctx, text)
        except (CommandError, BackendError, NothingToRetry) as exc:
            self._metrics.errors.labels(type(exc).__name__).inc()
            await ctx.reply_error(str(exc))
        except Exception:
            self._metrics.errors.labels("internal").inc()
            log.exception("unexpected error handling a message in %s", incoming.chat)
            await ctx.reply_error(
                "Something went wrong on our side; the error is in the bot's log."
            )

    async def converse(self, ctx: Context, text: str) -> None:
        """Plain chat: validate the length, count the rate, then let the conversation answer."""
        if len(text) > MAX_MESSAGE_CHARS:
            raise CommandError(
                f"your message is {len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}"
            )
        self._count_request(ctx.incoming)
        seen = None
        if ctx.incoming.attachments:  # pictures sent with the message (Telegram, Discord)
            sight = self._services.sight
            pictures, seconds = await sight.read(ctx.incoming.attachments)
            seen = await sight.route(ctx.backend, pictures, str(ctx.chat.key), seconds)
        await self._services.conversation.respond(ctx, text, seen=seen)

    async def _command(self, ctx: Context, text: str) -> None:
        head, _, args = text[1:].partition(" ")
        name = head.split("@", 1)[0].lower()
        commands = self._services.commands
        command = commands.get(name)
        if command is None:
            close = difflib.get_close_matches(name, commands.names(), n=1)
            hint = f" Did you mean /{close[0]}?" if close else ""
            raise CommandError(f"unknown command /{name}.{hint} /help lists the commands.")
        options = ctx.incoming.options
        values = command.parse(args) if options is None else command.check(options)
        command.check_attachments(len(ctx.incoming.attachments))
        result = await run_chain(self.middlewares, ctx, command, values, self._run)
        if result:
            await ctx.reply(result)

    async def run_tool(
        self, ctx: TurnSource, command: Command, values: dict[str, Any]
    ) -> str | None:
        """A command the model called as a tool, in its turn's chat: through the middleware
        (the permission and rate checks of its sender) to the handler, without waiting for
        the chat's turns (the tool runs inside one)."""
        if not isinstance(ctx, Context):
            raise TypeError("a tool runs in a turn started by a message's Context")
        return await run_chain(self.middlewares, ctx, command, values, self._invoke)

    async def _run(self, ctx: Context, command: Command, values: dict[str, Any]) -> str | None:
        """The end of the middleware chain: the handler, in the chat's order."""
        if not (command.writes_ahead or command.changes_history or command.immediate):
            # Answered in arrival order: after the chat's earlier replies, seeing what they
            # and earlier commands stored. The chat's next message waits for this one (its
            # place is released when handling ends). /reset and /retry act on the replies
            # themselves (a /retry queues as a turn).
            await self._services.conversation.after_earlier_turns(ctx.chat.id)
            ctx = await self.context(ctx.incoming, ctx.target, ctx.on_accepted)
        return await self._invoke(ctx, command, values)

    async def _invoke(self, ctx: Context, command: Command, values: dict[str, Any]) -> str | None:
        if command.internal:
            return await command.handler(ctx, **values)
        plugin_ctx = PluginContext(ctx, command.plugin, counted=command.uses_model)
        return await command.handler(plugin_ctx, **values)
