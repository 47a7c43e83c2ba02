"""Middleware around command handlers: checks that run before a command, in a chain.

Each middleware is called as `middleware(ctx, command, values, call_next)` once the command's
arguments are validated, and either refuses (raises CommandError, whose text is the reply) or
hands on with `await call_next(ctx, values)`, the next middleware or, last, the handler
(aiogram's middlewares, for commands). The router runs them in the order registered
(`Router.use`); botkit registers the permission check, then the rate limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from botkit.core.commands import Command, CommandError
from botkit.core.context import Context
from botkit.core.events import Incoming
from botkit.core.limits import RateLimiter

__all__ = [
    "CallNext",
    "Middleware",
    "MiddlewareFailed",
    "RateLimit",
    "require_permission",
    "run_chain",
]

log = logging.getLogger(__name__)

Result = str | None
CallNext = Callable[[Context, dict[str, Any]], Awaitable[Result]]
Middleware = Callable[[Context, Command, dict[str, Any], CallNext], Awaitable[Result]]
Endpoint = Callable[[Context, Command, dict[str, Any]], Awaitable[Result]]


class MiddlewareFailed(CommandError):
    """A middleware itself failed (not a refusal): the command did not run."""


def _name(middleware: Middleware) -> str:
    return str(getattr(middleware, "__name__", type(middleware).__name__)).replace("_", " ")


async def run_chain(
    middlewares: Sequence[Middleware],
    ctx: Context,
    command: Command,
    values: dict[str, Any],
    endpoint: Endpoint,
) -> Result:
    """Run command through middlewares, in order, then endpoint (which calls the handler).

    A refusal (CommandError and the like) goes up as it is. Any other exception raised by a
    middleware itself, not by what comes after it, is logged and becomes MiddlewareFailed, a
    reply that names the check; the handler's own errors stay the router's to answer.
    """

    async def step(index: int, ctx: Context, values: dict[str, Any]) -> Result:
        if index == len(middlewares):
            return await endpoint(ctx, command, values)
        middleware = middlewares[index]
        downstream = False

        async def call_next(ctx: Context, values: dict[str, Any]) -> Result:
            nonlocal downstream
            downstream = True  # from here on, an exception is the rest of the chain's
            return await step(index + 1, ctx, values)

        try:
            return await middleware(ctx, command, values, call_next)
        except CommandError:
            raise
        except Exception as exc:
            if downstream:
                raise
            log.exception("middleware %s failed on /%s", _name(middleware), command.name)
            raise MiddlewareFailed(
                f"/{command.name} did not run: the bot's {_name(middleware)} check failed "
                f"({type(exc).__name__}); the error is in the bot's log"
            ) from exc

    return await step(0, ctx, values)


async def require_permission(
    ctx: Context, command: Command, values: dict[str, Any], call_next: CallNext
) -> Result:
    """Refuse a command that changes the chat's settings or history to someone who may not."""
    # Without a value a settings command only shows it, which anyone may see.
    changes = command.changes_history or (
        command.changes_settings and any(v is not None for v in values.values())
    )
    if changes and not ctx.incoming.user.can_change_settings:
        raise CommandError(
            f"only people allowed to change this chat's settings can use /{command.name}"
        )
    return await call_next(ctx, values)


class RateLimit:
    """The per-user rate limit: a chat message and every command that runs the model
    (`uses_model`) count alike. The console is exempt: it is the owner at their own terminal
    (piped lines come as fast as they are read), and the limits are for platforms."""

    __name__ = "rate limit"

    def __init__(self, per_minute: int) -> None:
        self._limiter = RateLimiter(per_minute)

    def count(self, incoming: Incoming) -> None:
        """Count one request of incoming's sender; refuse it (CommandError) when over."""
        if incoming.chat.platform == "console":
            return
        wait = self._limiter.check(f"{incoming.chat.platform}:{incoming.user.id}")
        if wait:
            raise CommandError(
                f"you are sending messages faster than {self._limiter.per_minute} a minute; "
                f"try again in {wait:.0f} s"
            )

    async def __call__(
        self, ctx: Context, command: Command, values: dict[str, Any], call_next: CallNext
    ) -> Result:
        if command.uses_model:
            self.count(ctx.incoming)
        return await call_next(ctx, values)
