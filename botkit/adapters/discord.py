"""The Discord adapter on discord.py 2: the gateway client, its lifecycle, and its events
(chat messages and slash commands) turned into `Incoming` for the router.

Every registered command becomes a slash command with typed options (discord_commands.py). A
slash command is deferred at once (Discord wants an answer within 3 s), then its reply grows by
editing the original response and continues in follow-ups; past the interaction token's
lifetime it continues as plain channel messages (discord_targets.py). Chat messages (a DM, a
mention, a reply to the bot) are answered in the channel; each channel and thread is its own
conversation. Who may use the bot is decided by the access lists (discord_access.py). Model
output never pings anyone (allowed_mentions none, on the client and on every message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import discord
import yarl
from discord import app_commands

from botkit.adapters.base import HandledHook, TokenRefused
from botkit.adapters.cut_marks import CutReplyMarker
from botkit.adapters.discord_access import DiscordAccess
from botkit.adapters.discord_commands import slash_command, sync_commands
from botkit.adapters.discord_files import attachment
from botkit.adapters.discord_targets import MAX_LENGTH, NO_PINGS, ChannelTarget, InteractionTarget
from botkit.config import DiscordConfig
from botkit.core.commands import FILE_OPTION, Command, CommandRegistry
from botkit.core.events import ChatKey, Incoming
from botkit.core.router import Router
from botkit.secrets import install_redaction
from botkit.store.cut_marks import CutReply
from botkit.store.repository import Repository

__all__ = ["DiscordAdapter"]

log = logging.getLogger(__name__)


class _NoVoiceWarnings(logging.Filter):
    """botkit uses no voice: drop discord.py's warnings that voice libraries are missing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


class DiscordAdapter:
    """Connects one bot token to the router."""

    name = "discord"

    def __init__(
        self,
        config: DiscordConfig,
        token: str,
        registry: CommandRegistry,
        *,
        store: Repository,
        mark_interval: float,
    ) -> None:
        """store: where the bot's chats are adopted and its cut replies wait; mark_interval:
        seconds between looks for cut replies to mark ([service] heartbeat_interval)."""
        self.config = config
        self._store = store
        self._mark_interval = mark_interval
        self._access = DiscordAccess(config)
        self._marker: CutReplyMarker | None = None
        self._token = token
        self._registry = registry
        self._router: Router | None = None
        self._stopped = asyncio.Event()
        self.ready = asyncio.Event()
        self.synced = False
        self.client: discord.Client | None = None
        self.on_handled: HandledHook | None = None
        self.tree: app_commands.CommandTree[Any] | None = None

    def _make_client(self) -> discord.Client:
        intents = discord.Intents.default()
        intents.message_content = True  # to read mentions in guild channels
        options: dict[str, Any] = {
            "intents": intents,
            "allowed_mentions": NO_PINGS,
            "guild_ready_timeout": self.config.guild_ready_timeout,
        }
        if self.config.shard_count is not None:
            if self.config.shard_ids is not None:
                options["shard_ids"] = self.config.shard_ids
            return discord.AutoShardedClient(shard_count=self.config.shard_count, **options)
        return discord.Client(**options)

    async def start(self, router: Router) -> None:
        """Log in, sync the slash commands if they changed, and serve until stop()."""
        install_redaction()
        client_log = logging.getLogger("discord.client")
        if not any(isinstance(f, _NoVoiceWarnings) for f in client_log.filters):
            client_log.addFilter(_NoVoiceWarnings())
        cfg = self.config
        if cfg.api_base_url:
            discord.http.Route.BASE = cfg.api_base_url
        if cfg.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.gateway_url)
        self._router = router
        client = self._make_client()
        self.client = client
        tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
        self.tree = tree
        for command in self._registry.all():
            tree.add_command(slash_command(command, self._on_slash))
        client.event(self.on_message)
        client.event(self.on_ready)
        try:
            try:
                await client.login(self._token)
            except discord.LoginFailure as exc:
                raise TokenRefused(str(exc)) from None
            await self._store.adopt_chats("discord", f"{self._bot_id}/")
            if await sync_commands(tree, self.config.guild_ids):
                self.synced = True
            connection = asyncio.create_task(client.connect(reconnect=True))
            stop = asyncio.create_task(self._stopped.wait())
            await asyncio.wait({connection, stop}, return_when=asyncio.FIRST_COMPLETED)
            if connection.done():
                stop.cancel()
                connection.result()  # a fatal error (e.g. bad token) surfaces here
        finally:
            if self._marker is not None:
                await self._marker.stop()
            await client.close()

    async def stop_taking(self) -> None:
        """Discord does not keep events for later: from now on the router answers each one
        (privately, for a slash command) that the bot is restarting."""

    async def stop(self) -> None:
        """Disconnect; in-flight replies finish through REST."""
        self._stopped.set()

    @property
    def _bot_id(self) -> int:
        """The bot's user id (known from login on)."""
        user = self.client.user if self.client else None
        return user.id if user else 0

    def _chat(self, channel_id: int) -> ChatKey:
        """A channel's conversation with this bot: named by the bot too, since two bots in one
        guild channel on one database see the same channel id."""
        return ChatKey("discord", f"{self._bot_id}/{channel_id}")

    async def on_ready(self) -> None:
        """The gateway session is up and the guilds are known (again, after a reconnect)."""
        log.info("discord: connected as %s", self.client.user if self.client else "?")
        if self._marker is None and self._router is not None:
            self._marker = CutReplyMarker(
                self._store.cut_marks, "discord", f"{self._bot_id}/", self._edit_cut_reply,
                max_length=MAX_LENGTH, gives_up=(discord.HTTPException, ValueError),
                interval=self._mark_interval,
            )  # fmt: skip
            await self._marker.start()
        self.ready.set()

    async def _edit_cut_reply(self, reply: CutReply, text: str) -> None:
        """Put text (the reply, marked as cut) in the reply's last message."""
        if self.client is None:
            return
        channel_id, _, message_id = reply.reply_ref.partition(":")
        channel = self.client.get_partial_messageable(int(channel_id))
        await channel.get_partial_message(int(message_id)).edit(
            content=text, allowed_mentions=NO_PINGS
        )

    # --- events -----------------------------------------------------------------------------

    def _addressed(self, message: discord.Message) -> tuple[bool, bool, str]:
        """(mentioned, reply to the bot, text without the bot's mention)."""
        me = self.client.user if self.client else None
        if me is None:
            return False, False, message.content
        mentioned = any(u.id == me.id for u in message.mentions)
        text = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        resolved = message.reference.resolved if message.reference else None
        reply_to_bot = isinstance(resolved, discord.Message) and resolved.author.id == me.id
        return mentioned, reply_to_bot, " ".join(text.split(" ")).strip()

    def _handled(self, event_id: str) -> None:
        if self.on_handled is not None:
            self.on_handled(event_id)

    async def on_message(self, message: discord.Message) -> None:
        """A DM, a mention or a reply to the bot is a chat message for that channel."""
        try:
            await self._on_message(message)
        finally:
            self._handled(str(message.id))

    async def _on_message(self, message: discord.Message) -> None:
        if message.author.bot or self._router is None:
            return
        is_dm = message.guild is None
        mentioned, reply_to_bot, text = self._addressed(message)
        if not (is_dm or mentioned or reply_to_bot) or not text:
            return
        # The message's place in its channel's line, taken before the awaits below.
        place = self._router.arrivals.place(self._chat(message.channel.id))
        try:
            if not await self._access.admits(
                self.client, message.author, message.channel.id, is_dm
            ):
                return
            perms = getattr(message.author, "guild_permissions", None)
            incoming = Incoming(
                chat=self._chat(message.channel.id),
                user=self._access.user(message.author, bool(perms and perms.manage_guild), is_dm),
                text=text,
                is_dm=is_dm,
                mentioned=mentioned,
                reply_to_bot=reply_to_bot,
                attachments=tuple(attachment(a) for a in message.attachments),
            )
            target = ChannelTarget(message.channel, self.config.edit_interval, reply_to=message)
            # A missing typing indicator is no reason to drop the message.
            with contextlib.suppress(discord.HTTPException):
                await message.channel.typing()
            await self._router.handle(incoming, target, place=place)
        finally:
            place.release()  # (released when handled; here if dropped before)

    async def _on_slash(
        self, interaction: discord.Interaction[Any], command: Command, values: dict[str, Any]
    ) -> None:
        """Defer at once, then run the command through the router like a typed one."""
        try:
            await self._slash(interaction, command, values)
        finally:
            self._handled(str(interaction.id))

    async def _slash(
        self, interaction: discord.Interaction[Any], command: Command, values: dict[str, Any]
    ) -> None:
        target = InteractionTarget(
            interaction, self.config.edit_interval, self.config.interaction_lifetime
        )
        await interaction.response.defer(thinking=True)
        if self._router is None:
            return
        channel_id = interaction.channel_id or 0
        user = interaction.user
        is_dm = interaction.guild_id is None
        if not await self._access.admits(self.client, user, channel_id, is_dm):
            await target.send_error("⚠ you are not allowed to use this bot here")
            return
        file = values.pop(FILE_OPTION, None) if command.takes_file else None
        args = " ".join(
            str(values[p.name]) for p in command.params if values.get(p.name) is not None
        )
        incoming = Incoming(
            chat=self._chat(channel_id),
            user=self._access.user(user, interaction.permissions.manage_guild, is_dm),
            text=f"/{command.name} {args}".strip(),
            is_dm=is_dm,
            options={k: v for k, v in values.items() if v is not None},
            attachments=(attachment(file),) if file is not None else (),
        )
        await self._router.handle(incoming, target)
        await target.finish()
