"""Running the enabled adapters together until they finish or a signal asks to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from botkit.adapters.base import Adapter
from botkit.adapters.console import ConsoleAdapter
from botkit.config import Config
from botkit.core.app import Bot
from botkit.secrets import read_secret

__all__ = ["AdapterError", "build_adapters", "run_adapters"]

log = logging.getLogger(__name__)


class AdapterError(Exception):
    """An adapter cannot start (e.g. its token is missing); the message says how to fix it."""


def build_adapters(config: Config, bot: Bot) -> list[Adapter]:
    """The adapters the config enables, console last (it is the only one reading stdin)."""
    adapters: list[Adapter] = []
    if config.telegram.enabled:
        from botkit.adapters.telegram import TelegramAdapter

        token = read_secret(config.telegram.token_env, config.telegram.credential)
        if token is None:
            raise AdapterError(
                f"[telegram] is enabled but no token was found: set ${config.telegram.token_env} "
                f"or a systemd credential named {config.telegram.credential!r}"
            )
        secret = None
        if config.telegram.mode == "webhook":
            secret = read_secret(
                config.telegram.webhook_secret_env, config.telegram.webhook_secret_credential
            )
            if secret is None:
                raise AdapterError(
                    "[telegram] mode = 'webhook' needs a secret token: set "
                    f"${config.telegram.webhook_secret_env} (1-256 characters A-Z a-z 0-9 _ -)"
                )
        adapters.append(TelegramAdapter(config.telegram, token, bot.registry, secret))
    if config.discord.enabled:
        from botkit.adapters.discord import DiscordAdapter

        token = read_secret(config.discord.token_env, config.discord.credential)
        if token is None:
            raise AdapterError(
                f"[discord] is enabled but no token was found: set ${config.discord.token_env} "
                f"or a systemd credential named {config.discord.credential!r}"
            )
        adapters.append(DiscordAdapter(config.discord, token, bot.registry))
    if config.console.enabled and sys.stdin.isatty():
        adapters.append(ConsoleAdapter(user_name=config.console.user_name))
    return adapters


async def run_adapters(bot: Bot, adapters: list[Adapter]) -> None:
    """Run adapters until all have finished; SIGTERM (and SIGINT without a console) stops all."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop_all() -> None:
        log.info("stopping: no new messages are taken")
        stopping.extend(asyncio.ensure_future(a.stop()) for a in adapters)

    signals = [signal.SIGTERM]
    if not any(isinstance(a, ConsoleAdapter) for a in adapters):
        signals.append(signal.SIGINT)  # the console handles Ctrl-C itself
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_all)
    try:
        results = await asyncio.gather(
            *(a.start(bot.router) for a in adapters), return_exceptions=True
        )
        for adapter, result in zip(adapters, results, strict=True):
            if isinstance(result, BaseException):
                log.error("adapter %s stopped with an error: %r", adapter.name, result)
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await asyncio.gather(*stopping)
