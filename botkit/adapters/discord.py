"""The Discord adapter on discord.py 2: slash commands, mentions, replies and DMs, streamed.

Every registered command becomes a slash command with typed options (discord_commands.py). A
slash command is deferred at once (Discord wants an answer within 3 s), then its reply grows by
editing the original response and continues in follow-ups; past the interaction token's
lifetime it continues as plain channel messages. Chat messages (a DM, a mention, a reply to the
bot) are answered in the channel; each channel and thread is its own conversation. Model output
never pings anyone (allowed_mentions none, on the client and on every message).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import discord
import yarl
from discord import app_commands

from botkit.adapters.base import HandledHook, TokenRefused
from botkit.adapters.cut_marks import CutReplyMarker
from botkit.adapters.discord_commands import command_signature, slash_command
from botkit.config import DiscordConfig
from botkit.core.commands import Command, CommandRegistry
from botkit.core.events import ChatKey, Incoming, User
from botkit.core.router import Router
from botkit.core.streaming import ReplyStream, TextTarget, interrupted_ending, split_message
from botkit.secrets import install_redaction
from botkit.store.cut_marks import CutReply

__all__ = ["ChannelTarget", "DiscordAdapter", "InteractionTarget"]

log = logging.getLogger(__name__)

MAX_LENGTH = 2000
NO_PINGS = discord.AllowedMentions.none()


def _png_file(png: bytes) -> discord.File:
    return discord.File(io.BytesIO(png), filename="chart.png")


@dataclass
class _Sent:
    """A handle: where a piece of the reply lives, so it can be edited."""

    kind: str  # "original", "followup" or "channel"
    message: Any = None


def _reference(handle: _Sent) -> str:
    return f"{handle.message.channel.id}:{handle.message.id}"


@dataclass
class ChannelTarget(TextTarget):
    """Replies in a channel: the first piece answers the user's message, edits grow it."""

    channel: Any
    min_edit_interval: float
    reply_to: discord.Message | None = None
    max_length: int = MAX_LENGTH

    async def send(self, text: str) -> _Sent:
        """channel.send, never pinging; the first piece answers the user's message (if it is
        still there: Discord refuses a reply to a deleted message unless told not to fail)."""
        reference = self.reply_to.to_reference(fail_if_not_exists=False) if self.reply_to else None
        message = await self.channel.send(
            text, reference=reference, mention_author=False, allowed_mentions=NO_PINGS
        )
        self.reply_to = None
        return _Sent("channel", message)

    async def edit(self, handle: _Sent, text: str) -> None:
        """message.edit."""
        await handle.message.edit(content=text, allowed_mentions=NO_PINGS)

    def reference(self, handle: _Sent) -> str:
        """channel id:message id."""
        return _reference(handle)

    async def send_image(self, png: bytes, text: str) -> None:
        """The chart as an attachment, its text with it (or after it, when long)."""
        fits = len(text) <= self.max_length
        await self.channel.send(
            text if fits else None, file=_png_file(png), allowed_mentions=NO_PINGS
        )
        if not fits:
            await ReplyStream(self).finish(text)


@dataclass
class InteractionTarget(TextTarget):
    """Replies to a deferred slash command: the original response, then follow-ups."""

    interaction: discord.Interaction[Any]
    min_edit_interval: float
    lifetime: float
    max_length: int = MAX_LENGTH
    received: float = field(default_factory=time.monotonic)
    _original_used: bool = False

    @property
    def expired(self) -> bool:
        """Whether the interaction token can no longer be used."""
        return time.monotonic() - self.received > self.lifetime

    async def _channel_send(self, text: str) -> _Sent:
        channel: Any = self.interaction.channel
        message = await channel.send(text, allowed_mentions=NO_PINGS)
        return _Sent("channel", message)

    async def send(self, text: str) -> _Sent:
        """The first piece fills the deferred response; later pieces are follow-ups."""
        if self.expired:
            return await self._channel_send(text)
        if not self._original_used:
            self._original_used = True
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
            return _Sent("original")
        message = await self.interaction.followup.send(text, wait=True, allowed_mentions=NO_PINGS)
        return _Sent("followup", message)

    async def edit(self, handle: _Sent, text: str) -> None:
        """Edit a piece; once the token has expired, the piece continues as a channel message."""
        if handle.kind != "channel" and self.expired:
            moved = await self._channel_send(text)
            handle.kind, handle.message = moved.kind, moved.message
            return
        if handle.kind == "original":
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
        else:
            await handle.message.edit(content=text, allowed_mentions=NO_PINGS)

    def reference(self, handle: _Sent) -> str | None:
        """channel id:message id, for a piece sent as a plain channel message; the interaction's
        own messages can only be edited with its token, which is never stored."""
        return _reference(handle) if handle.kind == "channel" else None

    async def send_error(self, text: str) -> None:
        """Errors are ephemeral: only the user who asked sees them (split at 2,000 characters,
        like every message)."""
        pieces = split_message(text, self.max_length)
        if self.expired:
            for piece in pieces:
                await self._channel_send(piece)
            return
        if not self._original_used:
            self._original_used = True
            await self.interaction.delete_original_response()
        for piece in pieces:
            await self.interaction.followup.send(piece, ephemeral=True, allowed_mentions=NO_PINGS)

    async def send_image(self, png: bytes, text: str) -> None:
        """The chart as an attachment of the response, its text with it (or after, when long)."""
        fits = len(text) <= self.max_length
        content = text if fits else None
        if self.expired:
            channel: Any = self.interaction.channel
            await channel.send(content, file=_png_file(png), allowed_mentions=NO_PINGS)
        elif not self._original_used:
            self._original_used = True
            await self.interaction.edit_original_response(
                content=content, attachments=[_png_file(png)], allowed_mentions=NO_PINGS
            )
        else:
            await self.interaction.followup.send(
                content or "", file=_png_file(png), allowed_mentions=NO_PINGS
            )
        if not fits:
            await ReplyStream(self).finish(text)

    async def finish(self) -> None:
        """A command that said nothing still must not leave "thinking…" behind."""
        if not self._original_used and not self.expired:
            self._original_used = True
            await self.interaction.edit_original_response(content="Done.")


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
    ) -> None:
        self.config = config
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
            await router.bot.repo.adopt_chats("discord", f"{self._bot_id}/")
            await self._sync()
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
                self._router.bot.repo.cut_marks, "discord", f"{self._bot_id}/",
                self._mark_cut_reply, self._router.bot.config.service.heartbeat_interval,
            )  # fmt: skip
            await self._marker.start()
        self.ready.set()

    async def _mark_cut_reply(self, reply: CutReply) -> None:
        """End the last message of a reply a crash cut with the interrupted mark."""
        if self.client is None:
            return
        channel_id, _, message_id = reply.reply_ref.partition(":")
        text = interrupted_ending(reply.content, MAX_LENGTH)
        try:
            channel = self.client.get_partial_messageable(int(channel_id))
            await channel.get_partial_message(int(message_id)).edit(
                content=text, allowed_mentions=NO_PINGS
            )
        except (discord.HTTPException, ValueError) as exc:
            log.warning("discord: could not mark a cut reply: %s", exc)

    async def _sync(self) -> None:
        """Register the slash commands where they differ from what Discord has."""
        assert self.tree is not None
        tree = self.tree
        targets: list[discord.Object | None] = [discord.Object(g) for g in self.config.guild_ids]
        for guild in targets or [None]:
            if guild is not None:
                tree.copy_global_to(guild=guild)
            local = sorted(
                command_signature(c.to_dict(tree)) for c in tree.get_commands(guild=guild)
            )
            remote = sorted(
                command_signature(c.to_dict()) for c in await tree.fetch_commands(guild=guild)
            )
            if local != remote:
                await tree.sync(guild=guild)
                self.synced = True
                log.info("discord: synced %d slash commands (%s)", len(local),
                         f"guild {guild.id}" if guild else "global")  # fmt: skip

    # --- who may do what ------------------------------------------------------------------

    async def _roles(self, user: Any, is_dm: bool) -> list[int] | None:
        """The user's role ids. In a DM there are none on the message, so with role lists
        configured they are looked up in the bot's guilds (a denied role must not be bypassed
        by a DM); None when that lookup failed (the caller refuses: fail closed)."""
        if not is_dm:
            return [r.id for r in getattr(user, "roles", [])]
        cfg = self.config
        if not (cfg.deny_role_ids or cfg.allow_role_ids) or self.client is None:
            return []
        roles: list[int] = []
        for guild in self.client.guilds:
            member = guild.get_member(user.id)
            if member is None:
                try:
                    member = await guild.fetch_member(user.id)
                except discord.NotFound:
                    continue  # not in this guild
                except discord.HTTPException as exc:
                    log.warning("discord: could not look up a DM sender's roles: %s", exc)
                    return None
            roles += [r.id for r in member.roles]
        return roles

    def _allowed(self, user_id: int, role_ids: list[int], channel_id: int) -> bool:
        cfg = self.config
        if user_id in cfg.deny_user_ids or channel_id in cfg.deny_channel_ids:
            return False
        if any(r in cfg.deny_role_ids for r in role_ids):
            return False
        if cfg.allow_user_ids and user_id not in cfg.allow_user_ids:
            return False
        if cfg.allow_role_ids and not any(r in cfg.allow_role_ids for r in role_ids):
            return False
        return not (cfg.allow_channel_ids and channel_id not in cfg.allow_channel_ids)

    def _user(self, user: Any, manage_guild: bool, is_dm: bool) -> User:
        """Everyone changes their DM's settings; internals are for owners and managers only."""
        manager = self._is_manager(user, manage_guild)
        return User(str(user.id), user.display_name, is_dm or manager, trusted=manager)

    def _is_manager(self, user: Any, manage_guild: bool) -> bool:
        if manage_guild or user.id in self.config.settings_user_ids:
            return True
        roles = [r.id for r in getattr(user, "roles", [])]
        return any(r in self.config.settings_role_ids for r in roles)

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
            roles = await self._roles(message.author, is_dm)
            if roles is None or not self._allowed(message.author.id, roles, message.channel.id):
                return
            perms = getattr(message.author, "guild_permissions", None)
            incoming = Incoming(
                chat=self._chat(message.channel.id),
                user=self._user(message.author, bool(perms and perms.manage_guild), is_dm),
                text=text,
                is_dm=is_dm,
                mentioned=mentioned,
                reply_to_bot=reply_to_bot,
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
        roles = await self._roles(user, is_dm)
        if roles is None or not self._allowed(user.id, roles, channel_id):
            await target.send_error("⚠ you are not allowed to use this bot here")
            return
        args = " ".join(
            str(values[p.name]) for p in command.params if values.get(p.name) is not None
        )
        incoming = Incoming(
            chat=self._chat(channel_id),
            user=self._user(user, interaction.permissions.manage_guild, is_dm),
            text=f"/{command.name} {args}".strip(),
            is_dm=is_dm,
            options={k: v for k, v in values.items() if v is not None},
        )
        await self._router.handle(incoming, target)
        await target.finish()
