"""A Discord stand-in on 127.0.0.1: the v10 gateway (JSON text frames) and the REST API.

The real discord.py `Client` (with an `app_commands.CommandTree`) runs against it when
`discord.http.Route.BASE = emulator.rest_base` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emulator.gateway_url)`.

The world is fixed: one guild, two text channels, a public thread, Alice (a plain member),
Admin (a role with MANAGE_GUILD) and an owner (state.py, world.py). The parts, each with the
rules it enforces and their sources beside them:
- gateway.py: HELLO, heartbeats, IDENTIFY (token, intents, shards) → READY and GUILD_CREATE,
  RESUME with replay, intents, the bot's own messages echoed back;
- rest.py: authorization, error bodies, rate-limit headers and queued 429s (`fail_next`);
- directory.py: users, DM channels, the application, the guild, its channels and members;
- commands.py: command sync (global and guild), and options as interactions carry them;
- channels.py and messages.py: channel messages (send, edit, delete, fetch, history, typing,
  reactions), validated, with what each would have pinged;
- cdn.py: the files users attach, behind signed URLs that expire, and their download faults;
- interactions.py: interaction callbacks (3 s to answer, one answer only) and the interaction
  webhooks (@original and follow-ups, 15 minutes).

Tests inject traffic with `user_message()` and `slash_command()`, read what the bot did from
`messages`, `interactions`, `typing` and `requests`, queue 429s in `fail_next`, cut the
gateway with `drop_connection()`, and wait with `wait_for(predicate)`, which re-checks after
every REST request and every gateway frame.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.emulators.discord.cdn import Cdn
from tests.emulators.discord.channels import ChannelRoutes
from tests.emulators.discord.commands import Commands
from tests.emulators.discord.constants import ALICE_ID, API_PREFIX, GENERAL_ID, JSON
from tests.emulators.discord.directory import Directory
from tests.emulators.discord.gateway import Gateway
from tests.emulators.discord.interactions import Interactions
from tests.emulators.discord.messages import Messages
from tests.emulators.discord.records import InteractionRecord, MessageRecord
from tests.emulators.discord.rest import RestRouter
from tests.emulators.discord.state import EmulatorState
from tests.emulators.discord.world import World

__all__ = ["DiscordEmulator"]


class DiscordEmulator(EmulatorState):
    """Start with `await emulator.start()` (or `async with`); stop with `await emulator.stop()`."""

    def __init__(self, token: str = "emulated.bot-token.for-tests") -> None:
        super().__init__(token)
        world = World(self)
        self._messages = Messages(self, world)
        self._gateway = Gateway(self, world)
        self._rest = RestRouter(self)
        self._commands = Commands(self, world)
        self._interactions = Interactions(
            self, world, self._messages, self._gateway, self._commands
        )
        self._parts = (
            Directory(self, world),
            self._commands,
            ChannelRoutes(self, world, self._messages, self._gateway),
            self._interactions,
        )
        self.cdn = Cdn(self)
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("GET", "/gateway", self._gateway.serve)
        for part in self._parts:
            part.register(self._rest, app)
        self.cdn.register(app)
        app.router.add_route("*", "/{tail:.*}", self._rest.unknown)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.rest_base = f"http://127.0.0.1:{port}{API_PREFIX}"
        self.cdn.base = f"http://127.0.0.1:{port}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"

    async def stop(self) -> None:
        """Close every gateway connection (1001) and stop serving."""
        await self._gateway.close_all()
        self.cdn.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- what tests read ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """A client identified, got READY (and GUILD_CREATE on its shard) and is connected."""
        return self._gateway.ready

    @property
    def connected(self) -> bool:
        """Some shard's gateway connection is up and identified or resumed."""
        return self._gateway.connected

    async def wait_ready(self) -> None:
        """Wait until `ready` (every shard that identified so far is connected and served)."""
        await self.wait_for(lambda: self.ready)

    def sent_to(self, channel_id: int) -> list[MessageRecord]:
        """The bot's messages in a channel that still exist (ephemeral ones too), oldest first."""
        return [m for m in self.messages if m.channel_id == channel_id and not m.deleted]

    # --- what tests do --------------------------------------------------------------------

    async def user_message(
        self,
        content: str,
        *,
        channel_id: int = GENERAL_ID,
        author_id: int = ALICE_ID,
        mentions_bot: bool = False,
        reply_to: int | None = None,
        attachments: list[JSON] | None = None,
    ) -> JSON:
        """A user posts a message: dispatch MESSAGE_CREATE and return the full payload.
        attachments: objects from `cdn.add()`.

        For a DM pass `channel_id=emulator.dm_channel_id(author_id)`; its payload has no
        `guild_id`. `reply_to` is the id of a message to reply to (type 19; the replied author
        is mentioned, as Discord clients do by default).
        """
        guild = self.in_guild(channel_id, author_id)
        session = self._gateway.target(guild)
        payload = self._messages.from_user(
            content,
            channel_id=channel_id,
            author_id=author_id,
            mentions_bot=mentions_bot,
            reply_to=reply_to,
            attachments=attachments or [],
        )
        await self._gateway.user_message(session, payload, guild=guild)
        await self.notify()
        return payload

    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        channel_id: int = GENERAL_ID,
        user_id: int = ALICE_ID,
    ) -> InteractionRecord:
        """A user runs a chat-input command: dispatch INTERACTION_CREATE (type 2).

        Option types come from the synced command (guild commands first, then global); a
        nested dict is a subcommand's options. Unregistered options get a type from the value.
        """
        return await self._interactions.create(
            name, options or {}, channel_id=channel_id, user_id=user_id
        )

    async def delete_message(self, message_id: int) -> None:
        """A user or moderator deletes a message (a user's or the bot's): later edits, fetches
        and replies to it get 404 Unknown Message (10008), as on Discord."""
        record = self.records.get(message_id)
        if record is not None:
            self._messages.delete(record)
            await self._gateway.echo("MESSAGE_DELETE", record)
        elif self.payloads.pop(message_id, None) is None:
            raise ValueError(f"no message {message_id}")
        await self.notify()

    async def dispatch(self, event: str, data: JSON, *, guild: bool = True) -> None:
        """Dispatch a raw event to the shard of the guild (guild=False: shard 0)."""
        await self._gateway.dispatch(event, data, guild=guild)

    async def drop_connection(self, *, shard_id: int | None = None, code: int = 4000) -> None:
        """Close gateway connections with a resumable code; dispatches wait for the RESUME."""
        await self._gateway.drop_connection(shard_id=shard_id, code=code)

    async def request_reconnect(self, *, shard_id: int = 0) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        await self._gateway.request_reconnect(shard_id=shard_id)

    async def invalidate_session(self, *, shard_id: int = 0, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; unless resumable, the session is forgotten."""
        await self._gateway.invalidate_session(shard_id=shard_id, resumable=resumable)
