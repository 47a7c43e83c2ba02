"""The Telegram adapter on python-telegram-bot 22: DMs, groups and forum topics, streamed replies.

Long polling, with botkit's own loop around PTB's getUpdates: Telegram forgets an update as soon
as the next getUpdates asks past it, so that call waits until every update of the previous batch
has had its message committed to the store (or needs none). A crash then loses nothing that was
confirmed. Updates are processed concurrently and a re-delivered update is handled once (webhook
mode: telegram_webhook.py). This module is the update loop and the dispatch to the router; what a
message means is read in telegram_messages.py, who may use the bot is telegram_access.py, and
replies are plain text grown by edits (telegram_target.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from telegram import BotCommand, Update
from telegram import Message as TgMessage
from telegram import User as TgUser
from telegram.constants import ChatAction, ChatType
from telegram.error import InvalidToken, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
)

from botkit.adapters.base import HandledHook, TokenRefused
from botkit.adapters.cut_marks import CutReplyMarker
from botkit.adapters.telegram_access import TelegramAccess
from botkit.adapters.telegram_files import attachments
from botkit.adapters.telegram_messages import for_bot, text_of
from botkit.adapters.telegram_target import MAX_LENGTH, TelegramTarget
from botkit.config import TelegramConfig
from botkit.core.commands import CommandRegistry
from botkit.core.events import Incoming
from botkit.core.recent import RecentKeys
from botkit.core.router import Router
from botkit.secrets import install_redaction
from botkit.store.cut_marks import CutReply
from botkit.store.repository import Repository

__all__ = ["TelegramAdapter", "telegram_commands"]

log = logging.getLogger(__name__)

_SEEN_UPDATES = 4096
UNCAPTIONED_DOCUMENT = (
    "I got a file without a command. To add it to this chat's documents, send it again with "
    "the caption /docs add (/help lists the commands)."
)


def _picture(message: TgMessage) -> bool:
    """Whether the message carries a picture: a photo, or an image sent as a document."""
    document = message.document
    return bool(message.photo) or bool(
        document is not None and (document.mime_type or "").startswith("image/")
    )


def telegram_commands(registry: CommandRegistry) -> list[BotCommand]:
    """The command menu: every registered command with the first line of its help."""
    commands = []
    for command in registry.all():
        first = (command.help.splitlines() or [command.name])[0].strip() or command.name
        commands.append(BotCommand(command.name, first[:256]))
    return commands


class TelegramAdapter:
    """Connects one bot token to the router."""

    name = "telegram"

    def __init__(
        self,
        config: TelegramConfig,
        token: str,
        registry: CommandRegistry,
        webhook_secret: str | None = None,
        *,
        store: Repository,
        mark_interval: float,
    ) -> None:
        """store: where the bot's chats are adopted and its cut replies wait; mark_interval:
        seconds between looks for cut replies to mark ([service] heartbeat_interval)."""
        self.config = config
        self._store = store
        self._mark_interval = mark_interval
        self._access = TelegramAccess(config)
        self._tasks: set[asyncio.Task[None]] = set()
        self._token = token
        self._webhook_secret = webhook_secret
        self._registry = registry
        self._router: Router | None = None
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._stopped = asyncio.Event()
        self.ready = asyncio.Event()
        self._seen: RecentKeys[int] = RecentKeys(_SEEN_UPDATES)  # against duplicates
        self.on_handled: HandledHook | None = None
        self.username = ""
        self.bot_id = 0
        self._offset: int | None = None
        self._taking = True
        self._fetching = False
        self._poll_task: asyncio.Task[None] | None = None

    async def start(self, router: Router) -> None:
        """Connect, publish the command menu, and poll until stop()."""
        # PTB 22 warns that retry_after becomes a timedelta in v23; opt in now (we never read it).
        os.environ.setdefault("PTB_TIMEDELTA", "1")
        # httpx logs every request URL at INFO, and the token is part of the URL.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        install_redaction()
        self._router = router
        base = self.config.api_base_url
        app = (
            ApplicationBuilder()
            .token(self._token)
            .base_url(base)
            .base_file_url(base.replace("/bot", "/file/bot"))
            .rate_limiter(AIORateLimiter(max_retries=self.config.max_retries))
            .concurrent_updates(True)
            .build()
        )
        self._app = app
        try:
            await app.initialize()
        except InvalidToken as exc:
            raise TokenRefused(str(exc)) from None
        self.username = app.bot.username
        self.bot_id = app.bot.id
        await self._store.adopt_chats("telegram", f"{self.bot_id}/")
        await app.bot.set_my_commands(telegram_commands(self._registry))
        marker = CutReplyMarker(
            self._store.cut_marks, "telegram", f"{self.bot_id}/", self._edit_cut_reply,
            max_length=MAX_LENGTH, gives_up=(TelegramError, ValueError),
            interval=self._mark_interval,
        )  # fmt: skip
        await marker.start()
        if self.config.mode == "webhook":
            try:
                await self._run_webhook(app)
            finally:
                await marker.stop()
            return
        self.ready.set()
        log.info("telegram: connected as @%s (long polling)", self.username)
        poll = self._poll_task = asyncio.create_task(self._poll())
        stop = asyncio.create_task(self._stopped.wait())
        try:
            await asyncio.wait([poll, stop], return_when=asyncio.FIRST_COMPLETED)
            if poll.done() and not poll.cancelled():
                poll.result()  # a refused token ends the adapter
            await self._stopped.wait()  # polling ended by stop_taking: replies still go out
        finally:
            for task in (poll, stop):
                task.cancel()
            await asyncio.gather(poll, stop, return_exceptions=True)
            await marker.stop()
            await self._confirm()
            await app.shutdown()

    async def _poll(self) -> None:
        """getUpdates until cancelled; each call confirms the batch before it only once every
        update of that batch is committed (or needs nothing)."""
        assert self._app is not None
        bot = self._app.bot
        delay = 1.0
        while self._taking:
            try:
                self._fetching = True
                updates = await bot.get_updates(
                    offset=self._offset,
                    timeout=self.config.poll_timeout,
                    allowed_updates=[Update.MESSAGE],
                )
            except InvalidToken as exc:
                raise TokenRefused(str(exc)) from None
            except RetryAfter as exc:
                wait = exc.retry_after
                seconds = wait if isinstance(wait, int) else wait.total_seconds()
                await asyncio.sleep(seconds)  # Telegram said how long
                continue
            except TelegramError as exc:
                self._polling_error(exc)
                await asyncio.sleep(delay)  # back off while Telegram is unreachable
                delay = min(delay * 2, 30.0)
                continue
            finally:
                self._fetching = False
            delay = 1.0
            accepted = []
            for update in updates:
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                accepted.append(future)
                task = asyncio.create_task(self._process(update, future))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.gather(*accepted)
            if updates:
                self._offset = updates[-1].update_id + 1

    async def _confirm(self) -> None:
        """On stop: tell Telegram which updates were taken (those not taken stay with it)."""
        if self._offset is None or self._app is None:
            return
        try:
            await self._app.bot.get_updates(offset=self._offset, timeout=0, allowed_updates=[])
        except TelegramError as exc:
            log.warning("telegram: could not confirm the last updates: %s", type(exc).__name__)

    async def _edit_cut_reply(self, cut: CutReply, text: str) -> None:
        """Put text (the reply, marked as cut) in the reply's message."""
        assert self._app is not None
        chat_id = int(cut.chat_key.platform_id.rpartition("/")[2].split(":", 1)[0])
        await self._app.bot.edit_message_text(text, chat_id=chat_id, message_id=int(cut.reply_ref))

    async def _run_webhook(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Serve Telegram's webhook calls; each must carry the secret token."""
        from botkit.adapters.telegram_webhook import WebhookServer

        cfg = self.config
        assert cfg.webhook_url is not None
        server = WebhookServer(app.bot, self._webhook_secret, cfg.webhook_path, self._deliver)
        await server.start(cfg.webhook_listen, cfg.webhook_port)
        await app.bot.set_webhook(
            cfg.webhook_url, secret_token=self._webhook_secret, allowed_updates=[Update.MESSAGE]
        )
        self.ready.set()
        log.info("telegram: connected as @%s (webhook on port %s)", self.username, server.port)
        try:
            await self._stopped.wait()
        finally:
            await server.stop()
            await app.shutdown()

    async def stop_taking(self) -> None:
        """Fetch no more updates and confirm only those taken: the rest stay with Telegram
        for the next start (webhook mode: answer 503, so Telegram sends them again later)."""
        self._taking = False
        poll = self._poll_task
        if poll is None:
            return
        if self._fetching:
            poll.cancel()  # nothing of this fetch is taken or confirmed
        await asyncio.gather(poll, return_exceptions=True)  # start() reports its errors
        await self._confirm()

    async def stop(self) -> None:
        """Disconnect; in-flight replies have finished (or were cut)."""
        self._stopped.set()

    @staticmethod
    def _polling_error(error: TelegramError) -> None:
        # PTB retries with backoff by itself; say what happened, never the token.
        log.warning("telegram: polling failed, retrying: %s", type(error).__name__)

    async def _deliver(self, update: Update) -> bool:
        """Webhook mode: take an update; returns once it is committed (then Telegram may
        forget it), or False when the adapter takes no more (Telegram will send it again)."""
        if not self._taking:
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._process(update, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await future
        return True

    async def _process(self, update: Update, accepted: asyncio.Future[None]) -> None:
        def accept() -> None:
            if not accepted.done():
                accepted.set_result(None)

        try:
            if self._seen.add(update.update_id):
                await self._handle(update, accept)
        except Exception:
            log.exception("telegram: handling update %s failed", update.update_id)
        finally:
            accept()
            if self.on_handled is not None:
                self.on_handled(str(update.update_id))

    async def _uncaptioned(self, message: TgMessage) -> None:
        """A file other than a picture sent without a caption in a DM (in a group it is not
        for the bot): say what it takes, rather than nothing. (A picture without a caption goes
        to the model like any message: the picture is the question.)"""
        if message.chat.type != ChatType.PRIVATE or self._app is None:
            return
        if message.document is None:
            return  # a sticker, a location…: nothing botkit reads
        await self._app.bot.send_message(message.chat.id, UNCAPTIONED_DOCUMENT)

    async def _handle(self, update: Update, accept: Callable[[], None]) -> None:
        message = update.effective_message
        sender: TgUser | None = update.effective_user
        if message is None or sender is None or self._router is None:
            return
        if not self._access.admits(message.chat.id, sender.id):
            return
        if not text_of(message) and not _picture(message):
            await self._uncaptioned(message)
            return
        read = for_bot(message, self.username, self.bot_id)
        if read is None:
            return
        # The message's place in its chat's line, taken before the awaits below.
        place = self._router.arrivals.place(read.chat)
        try:
            assert self._app is not None
            bot = self._app.bot
            incoming = Incoming(
                chat=read.chat,
                user=await self._access.user(
                    bot, sender, message.chat.id, read.is_dm, read.is_command
                ),
                text=read.text,
                is_dm=read.is_dm,
                mentioned=read.mentioned,
                reply_to_bot=read.reply_to_bot,
                attachments=attachments(message, bot),
            )
            cfg = self.config
            interval = cfg.dm_edit_interval if read.is_dm else cfg.group_edit_interval
            reply_to = None if read.is_dm else message.message_id
            target = TelegramTarget(bot, message.chat.id, read.thread, reply_to, interval)
            if not read.is_command or read.text.split(maxsplit=1)[0].split("@")[0] == "/ask":
                await bot.send_chat_action(
                    message.chat.id, ChatAction.TYPING, message_thread_id=read.thread
                )
            await self._router.handle(incoming, target, accept, place)
        finally:
            place.release()  # (released when handled; here if something failed first)
