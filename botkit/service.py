"""Running the enabled adapters together until they finish or a signal asks to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sys

from botkit.adapters.base import Adapter, TokenRefused
from botkit.adapters.console import ConsoleAdapter
from botkit.config import Config
from botkit.core.app import Bot
from botkit.secrets import read_secret
from botkit.systemd import Notifier

__all__ = ["AdapterError", "AdapterFailed", "build_adapters", "run_adapters"]

log = logging.getLogger(__name__)


_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


class AdapterError(Exception):
    """An adapter cannot start (e.g. its token is missing); the message says how to fix it."""


class AdapterFailed(Exception):
    """An adapter stopped with an error: the whole service stops, so that systemd restarts it
    (a partial outage would otherwise go on unnoticed)."""


def _required_secret(section: str, env: str, credential: str, what: str = "token") -> str:
    value = read_secret(env, credential)
    if value is None:
        raise AdapterError(
            f"[{section}] is enabled but no {what} was found: set ${env} "
            f"or a systemd credential named {credential!r}"
        )
    return value


def build_adapters(config: Config, bot: Bot) -> list[Adapter]:
    """The adapters the config enables, console last (it is the only one reading stdin)."""
    adapters: list[Adapter] = []
    every = config.service.heartbeat_interval  # cut replies are found at each heartbeat
    if config.telegram.enabled:
        from botkit.adapters.telegram import TelegramAdapter

        tg = config.telegram
        token = _required_secret("telegram", tg.token_env, tg.credential)
        secret = None
        if tg.mode == "webhook":
            what = "webhook secret token (1-256 characters A-Z a-z 0-9 _ -)"
            secret = _required_secret(
                "telegram", tg.webhook_secret_env, tg.webhook_secret_credential, what
            )
            if not _WEBHOOK_SECRET.fullmatch(secret):
                # Telegram refuses it at setWebhook (Bot API, setWebhook: secret_token).
                raise AdapterError(
                    f"[telegram] the webhook secret token has {len(secret)} characters, "
                    f"{len(set(re.sub(r'[A-Za-z0-9_-]', '', secret)))} of them not allowed: "
                    f"Telegram accepts 1-256 characters of A-Z a-z 0-9 _ - only"
                )
        adapters.append(
            TelegramAdapter(tg, token, bot.registry, secret, store=bot.repo, mark_interval=every)
        )
    if config.discord.enabled:
        from botkit.adapters.discord import DiscordAdapter

        dc = config.discord
        token = _required_secret("discord", dc.token_env, dc.credential)
        adapters.append(
            DiscordAdapter(dc, token, bot.registry, store=bot.repo, mark_interval=every)
        )
    if config.console.enabled and sys.stdin.isatty():
        adapters.append(ConsoleAdapter(user_name=config.console.user_name))
    return adapters


async def run_adapters(bot: Bot, adapters: list[Adapter], notifier: Notifier | None = None) -> None:
    """Run adapters until they finish or SIGTERM (SIGINT too without a console) asks to stop.

    Stopping is graceful: no new messages are taken, replies in flight may finish within
    [service] grace_period, the rest are cut and stored as interrupted, then the adapters
    disconnect. An adapter that fails stops them all: AdapterError for a refused token (exit
    status 2, no restart), AdapterFailed otherwise (exit status 1, systemd restarts). So does
    losing this process's lease (LeaseLost, exit status 1): another process took its replies in
    flight as cut after its heartbeat stopped for too long.
    """
    notifier = notifier or Notifier()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    signals = [signal.SIGTERM]
    if not any(isinstance(a, ConsoleAdapter) for a in adapters):
        signals.append(signal.SIGINT)  # the console handles Ctrl-C itself
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_requested.set)
    running = [asyncio.create_task(a.start(bot.router), name=a.name) for a in adapters]
    watchdog = asyncio.create_task(notifier.watchdog(bot.failure))
    ready = asyncio.create_task(_announce_ready(adapters, notifier))
    stop_wait = asyncio.create_task(stop_requested.wait())
    lost_wait = asyncio.create_task(bot.lease_lost_event.wait())

    def failed() -> bool:
        return bot.lease_lost is not None or any(
            t.done() and not t.cancelled() and t.exception() for t in running
        )

    try:
        await asyncio.wait([*running, stop_wait, lost_wait], return_when=asyncio.FIRST_COMPLETED)
        while not (stop_requested.is_set() or failed() or all(t.done() for t in running)):
            # An adapter ended without an error (the console at end of input): the others go on.
            await asyncio.wait(
                [*(t for t in running if not t.done()), stop_wait, lost_wait],
                return_when=asyncio.FIRST_COMPLETED,
            )
        log.info("stopping: no new messages are taken")
        notifier.notify("STOPPING=1", "STATUS=finishing replies in flight")
        # First stop taking (what Telegram still holds stays there for the next start), then
        # let the replies in flight finish.
        await asyncio.gather(*(a.stop_taking() for a in adapters))
        cut = await bot.router.drain(bot.config.service.grace_period)
        if cut:
            log.warning("%d replies were cut by the shutdown and stored as interrupted", cut)
        await asyncio.gather(*(a.stop() for a in adapters))
        errors = []
        for adapter, result in zip(
            adapters, await asyncio.gather(*running, return_exceptions=True), strict=True
        ):
            if isinstance(result, TokenRefused):
                raise AdapterError(f"{adapter.name}: the token was refused ({result})")
            if isinstance(result, BaseException):
                log.error("adapter %s stopped with an error: %r", adapter.name, result)
                errors.append(f"{adapter.name}: {result!r}")
        if errors:
            raise AdapterFailed("; ".join(errors))
        if bot.lease_lost is not None:
            raise bot.lease_lost
    finally:
        for task in (watchdog, ready, stop_wait, lost_wait):
            task.cancel()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _announce_ready(adapters: list[Adapter], notifier: Notifier) -> None:
    """READY=1 once every adapter is connected."""
    for adapter in adapters:
        await adapter.ready.wait()
    names = ", ".join(a.name for a in adapters)
    notifier.notify("READY=1", f"STATUS=serving: {names}")
    log.info("ready: %s", names)
