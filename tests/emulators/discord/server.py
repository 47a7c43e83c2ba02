"""A Discord stand-in on 127.0.0.1: the v10 gateway (JSON text frames) and the REST API.

The real discord.py `Client` (with an `app_commands.CommandTree`) runs against it when
`discord.http.Route.BASE = emulator.rest_base` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emulator.gateway_url)`.

Gateway (/gateway): HELLO, heartbeats (always ACKed), IDENTIFY (token checked: 4004) → READY
(resume_gateway_url is this server) and GUILD_CREATE for a fixed world: one guild, two text
channels, a public thread, Alice (a plain member), Admin (a role with MANAGE_GUILD) and an
owner. Every session numbers and keeps its dispatches, so RESUME replays what the client
missed, including what was dispatched while it was disconnected; unknown sessions get
INVALID_SESSION. Shards (IDENTIFY's `shard`) are honoured: the guild lives on
`(GUILD_ID >> 22) % shard_count`, DMs on shard 0. Intents are honoured too: no MESSAGE_CREATE
without GUILD_MESSAGES / DIRECT_MESSAGES, and guild messages that do not mention the bot lose
their content without MESSAGE_CONTENT, as on Discord.

REST (/api/v10): users, application, gateway, command sync (global and guild), channel
messages (send, edit, delete, fetch, history, typing, reactions), DM channels, interaction
callbacks (3 s to answer, one answer only) and the interaction webhooks (@original and
follow-ups, 15 minutes). Answers carry rate-limit headers and `Content-Type: application/json`
exactly (discord.py ignores bodies with a charset). Like Discord, the bot's own non-ephemeral
messages come back over the gateway (MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE).

Tests inject traffic with `user_message()` and `slash_command()`, read what the bot did from
`messages`, `interactions`, `typing` and `requests`, queue 429s in `fail_next`, cut the
gateway with `drop_connection()`, and wait with `wait_for(predicate)`, which re-checks after
every REST request and every gateway frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import WSMsgType, web

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_VERSION = 10
API_PREFIX = f"/api/v{API_VERSION}"
DISCORD_EPOCH = 1_420_070_400_000
HEARTBEAT_INTERVAL = 41_250

APPLICATION_ID = 900000000000000001
BOT_ID = APPLICATION_ID  # bots made since 2016 share their application's id
BOT_NAME = "botkit"
GUILD_ID = 800000000000000001
ADMINS_ROLE_ID = 800000000000000002
BOT_ROLE_ID = 800000000000000003
GENERAL_ID = 800000000000000010
OTHER_ID = 800000000000000011
THREAD_ID = 800000000000000020
ALICE_ID = 700000000000000001
ADMIN_ID = 700000000000000002
OWNER_ID = 700000000000000009
_DM_BASE = 600000000000000000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE | ADD_REACTIONS | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS
    | ATTACH_FILES | READ_MESSAGE_HISTORY | USE_EXTERNAL_EMOJIS | CONNECT | SPEAK
    | CHANGE_NICKNAME | USE_APPLICATION_COMMANDS | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)  # fmt: skip

# Gateway intents.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

# Message flags.
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12

MAX_CONTENT = 2000
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)")
_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")
_OPTION_TYPES = {"SUB_COMMAND": 1, "SUB_COMMAND_GROUP": 2, "STRING": 3, "INTEGER": 4,
                 "BOOLEAN": 5, "USER": 6, "CHANNEL": 7, "ROLE": 8, "MENTIONABLE": 9,
                 "NUMBER": 10, "ATTACHMENT": 11}  # fmt: skip
_CALLBACK_TYPES = {1, 4, 5, 6, 7, 8, 9, 10, 12}


@dataclass
class MessageRecord:
    """A message the bot sent (channel message, interaction original or follow-up), as it is now.

    `would_ping` is sticky: true once any version of the message (as sent or edited) would
    have notified someone under the `allowed_mentions` sent with it (none sent = Discord's
    default, which pings). `history` holds every content the message had, oldest first.
    """

    id: int
    channel_id: int
    content: str
    via: Literal["channel", "followup", "original"] = "channel"
    edits: int = 0
    allowed_mentions: dict[str, Any] | None = None
    would_ping: bool = False
    reference: int | None = None
    ephemeral: bool = False
    deleted: bool = False
    loading: bool = False
    interaction_id: str | None = None
    history: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)


@dataclass
class InteractionRecord:
    """A slash command the emulator dispatched and everything the bot answered to it."""

    id: str
    token: str
    name: str
    channel_id: int
    user_id: int
    created: float  # time.monotonic() when INTERACTION_CREATE was dispatched
    payload: JSON = field(repr=False)
    callbacks: list[int] = field(default_factory=list)
    ephemeral_defer: bool = False
    original: MessageRecord | None = None
    followups: list[MessageRecord] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        """Whether the bot answered the interaction (any callback)."""
        return bool(self.callbacks)

    @property
    def original_content(self) -> str | None:
        """The current content of the original response (None: there is none)."""
        if self.original is None or self.original.deleted:
            return None
        return self.original.content

    @property
    def original_edits(self) -> int:
        """How often the original response was edited."""
        return 0 if self.original is None else self.original.edits


@dataclass
class _User:
    id: int
    username: str
    global_name: str | None
    roles: list[int] = field(default_factory=list)
    bot: bool = False


@dataclass
class _Session:
    id: str
    shard: tuple[int, int]
    intents: int
    sent_shard: bool
    seq: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)  # (s, frame as sent)
    ws: web.WebSocketResponse | None = None
    ready: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Reject(Exception):
    """Raised by helpers to answer a request with an error response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _role(role_id: int, name: str, permissions: int, position: int, **extra: Any) -> JSON:
    return {
        "id": str(role_id), "name": name, "permissions": str(permissions),
        "position": position, "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False, "managed": False, "mentionable": False, "icon": None,
        "unicode_emoji": None, "flags": 0, **extra,
    }  # fmt: skip


def _text_channel(channel_id: int, name: str, position: int) -> JSON:
    return {
        "id": str(channel_id), "type": 0, "name": name, "position": position,
        "parent_id": None, "topic": None, "nsfw": False, "last_message_id": None,
        "rate_limit_per_user": 0, "permission_overwrites": [], "flags": 0,
    }  # fmt: skip


def _infer_option_type(value: Any) -> int:
    if isinstance(value, bool):
        return _OPTION_TYPES["BOOLEAN"]
    if isinstance(value, int):
        return _OPTION_TYPES["INTEGER"]
    if isinstance(value, float):
        return _OPTION_TYPES["NUMBER"]
    if isinstance(value, dict):
        return _OPTION_TYPES["SUB_COMMAND"]
    return _OPTION_TYPES["STRING"]


class DiscordEmulator:
    """Start with `await emulator.start()` (or `async with`); stop with `await emulator.stop()`."""

    def __init__(self, token: str = "emulated.bot-token.for-tests") -> None:
        self.token = token
        self.rest_base = ""
        self.gateway_url = ""
        self.callback_deadline = 3.0  # seconds to answer an interaction
        self.token_lifetime = 15 * 60.0  # seconds an interaction token serves its webhook

        self.messages: list[MessageRecord] = []
        self.interactions: dict[str, InteractionRecord] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown_routes: list[tuple[str, str]] = []
        self.typing: list[int] = []
        self.reactions: list[tuple[int, int, str]] = []
        self.global_commands: list[JSON] = []
        self.guild_commands: dict[int, list[JSON]] = {}
        self.sync_count = 0
        self.fail_next: defaultdict[str, list[float]] = defaultdict(list)
        self.rate_limited = 0

        self.identify_count = 0
        self.resume_count = 0
        self.heartbeats = 0
        self.invalid_sessions = 0
        self.intents: int | None = None
        self.presences: list[JSON] = []
        self.dispatched: list[str] = []

        self.users: dict[int, _User] = {
            BOT_ID: _User(BOT_ID, BOT_NAME, None, [BOT_ROLE_ID], bot=True),
            ALICE_ID: _User(ALICE_ID, "alice", "Alice"),
            ADMIN_ID: _User(ADMIN_ID, "admin", "Admin", [ADMINS_ROLE_ID]),
            OWNER_ID: _User(OWNER_ID, "owner", "Owner"),
        }
        self.roles: dict[int, JSON] = {
            GUILD_ID: _role(GUILD_ID, "@everyone", EVERYONE_PERMISSIONS, 0),
            ADMINS_ROLE_ID: _role(ADMINS_ROLE_ID, "admins", MANAGE_GUILD | MANAGE_MESSAGES, 1),
            BOT_ROLE_ID: _role(BOT_ROLE_ID, BOT_NAME, EVERYONE_PERMISSIONS, 2, managed=True,
                               tags={"bot_id": str(BOT_ID)}),
        }  # fmt: skip
        self._channels: dict[int, JSON] = {
            GENERAL_ID: _text_channel(GENERAL_ID, "general", 0),
            OTHER_ID: _text_channel(OTHER_ID, "other", 1),
            THREAD_ID: {
                "id": str(THREAD_ID), "type": 11, "name": "a thread",
                "guild_id": str(GUILD_ID), "parent_id": str(GENERAL_ID),
                "owner_id": str(ALICE_ID), "last_message_id": None, "message_count": 0,
                "member_count": 1, "total_message_sent": 0, "rate_limit_per_user": 0,
                "flags": 0,
                "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                    "archive_timestamp": _now(), "locked": False,
                                    "create_timestamp": _now()},
            },
        }  # fmt: skip
        self._joined_at = _now()
        self._dm_users: dict[int, int] = {}  # DM channel id -> the user's id
        self._payloads: dict[int, JSON] = {}  # every live message (users' and the bot's)
        self._records: dict[int, MessageRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._sessions: dict[str, _Session] = {}
        self._live: dict[int, _Session] = {}  # shard id -> its latest session
        self._sockets: set[web.WebSocketResponse] = set()
        self._last_id = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.rest_base = f"http://127.0.0.1:{port}{API_PREFIX}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"

    async def stop(self) -> None:
        """Close every gateway connection (1001) and stop serving."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"Going away.")
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

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until predicate() is true; re-checked after every request and gateway frame."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    @property
    def ready(self) -> bool:
        """A client identified, got READY (and GUILD_CREATE on its shard) and is connected."""
        return bool(self._live) and all(s.ready and s.ws is not None for s in self._live.values())

    @property
    def connected(self) -> bool:
        """Some shard's gateway connection is up and identified or resumed."""
        return any(s.ws is not None for s in self._live.values())

    async def wait_ready(self) -> None:
        """Wait until `ready` (every shard that identified so far is connected and served)."""
        await self.wait_for(lambda: self.ready)

    def sent_to(self, channel_id: int) -> list[MessageRecord]:
        """The bot's messages in a channel that still exist (ephemeral ones too), oldest first."""
        return [m for m in self.messages if m.channel_id == channel_id and not m.deleted]

    def dm_channel_id(self, user_id: int) -> int:
        """The DM channel between the bot and a user (created on first use)."""
        self._user(user_id)
        channel_id = _DM_BASE + user_id % 10**15
        self._dm_users[channel_id] = user_id
        return channel_id

    def permissions_of(self, user_id: int) -> int:
        """A member's guild permissions: @everyone's, plus their roles', all for the owner."""
        if user_id == OWNER_ID:
            return ALL_PERMISSIONS
        value = int(self.roles[GUILD_ID]["permissions"])
        for role_id in self._user(user_id).roles:
            value |= int(self.roles[role_id]["permissions"])
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def add_user(
        self, user_id: int, name: str, *, roles: Iterable[int] = (), bot: bool = False
    ) -> None:
        """Add a guild member (before the client connects, to have it in GUILD_CREATE)."""
        self.users[user_id] = _User(user_id, name.lower(), name, list(roles), bot=bot)

    # --- what tests do --------------------------------------------------------------------

    async def user_message(
        self,
        content: str,
        *,
        channel_id: int = GENERAL_ID,
        author_id: int = ALICE_ID,
        mentions_bot: bool = False,
        reply_to: int | None = None,
    ) -> JSON:
        """A user posts a message: dispatch MESSAGE_CREATE and return the full payload.

        For a DM pass `channel_id=emulator.dm_channel_id(author_id)`; its payload has no
        `guild_id`. `reply_to` is the id of a message to reply to (type 19; the replied author
        is mentioned, as Discord clients do by default).
        """
        guild = channel_id in self._channels
        if not guild and self._dm_users.get(channel_id) != author_id:
            raise ValueError(f"{channel_id} is neither a guild channel nor {author_id}'s DM")
        session = self._target(guild)
        self._user(author_id)
        if mentions_bot and not re.search(rf"<@!?{BOT_ID}>", content):
            content = f"<@{BOT_ID}> {content}"
        mentioned = list(dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)))
        referenced: JSON | None = None
        if reply_to is not None:
            referenced = self._payloads.get(reply_to)
            if referenced is None:
                raise ValueError(f"no message {reply_to} to reply to")
            replied = int(referenced["author"]["id"])
            if replied != author_id and replied not in mentioned:
                mentioned.append(replied)
        message_id = self._snowflake()
        payload: JSON = {
            "id": str(message_id), "type": 0, "channel_id": str(channel_id),
            "author": self._user_json(author_id), "content": content, "timestamp": _now(),
            "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [self._mention_json(u, guild) for u in mentioned if u in self.users],
            "mention_roles": _ROLE_MENTION.findall(content), "attachments": [], "embeds": [],
            "pinned": False, "flags": 0, "components": [], "nonce": str(message_id),
        }  # fmt: skip
        if guild:
            payload["guild_id"] = str(GUILD_ID)
            payload["member"] = self._member_json(author_id, with_user=False)
        if referenced is not None:
            payload["type"] = 19
            payload["message_reference"] = self._reference_json(referenced)
            payload["referenced_message"] = self._as_referenced(referenced)
        self._payloads[message_id] = payload
        if self._subscribed(session, guild):
            visible = payload
            if guild and not session.intents & INTENT_MESSAGE_CONTENT and BOT_ID not in mentioned:
                visible = {**payload, "content": "", "embeds": [], "attachments": [],
                           "components": []}  # fmt: skip
            async with session.lock:
                await self._emit(session, "MESSAGE_CREATE", visible)
        await self._notify()
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
        guild = channel_id in self._channels
        if not guild and self._dm_users.get(channel_id) != user_id:
            raise ValueError(f"{channel_id} is neither a guild channel nor {user_id}'s DM")
        session = self._target(guild)
        command, guild_command = self._find_command(name, guild)
        resolved: JSON = {}
        definitions = command.get("options") or [] if command else []
        built = self._build_options(definitions, options or {}, resolved, guild)
        data: JSON = {"id": command["id"] if command else str(self._snowflake()),
                      "name": name, "type": 1}  # fmt: skip
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if guild_command:
            data["guild_id"] = str(GUILD_ID)
        interaction_id = str(self._snowflake())
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: JSON = {
            "id": interaction_id, "application_id": str(APPLICATION_ID), "type": 2,
            "token": token, "version": 1, "data": data, "channel_id": str(channel_id),
            "channel": self._channel_json(channel_id, viewer=user_id), "locale": "en-US",
            "app_permissions": str(self.permissions_of(BOT_ID)), "entitlements": [],
            "authorizing_integration_owners": {"0": str(GUILD_ID) if guild else "0"},
            "context": 0 if guild else 1, "attachment_size_limit": 10 * 1024 * 1024,
        }  # fmt: skip
        if guild:
            payload["guild_id"] = str(GUILD_ID)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(GUILD_ID), "locale": "en-US", "features": []}
            payload["member"] = self._member_json(user_id, with_user=True, permissions=True)
        else:
            payload["user"] = self._user_json(user_id)
        record = InteractionRecord(
            id=interaction_id, token=token, name=name, channel_id=channel_id, user_id=user_id,
            created=time.monotonic(), payload=payload,
        )  # fmt: skip
        self.interactions[interaction_id] = record
        self._by_token[token] = record
        async with session.lock:
            await self._emit(session, "INTERACTION_CREATE", payload)
        await self._notify()
        return record

    async def delete_message(self, message_id: int) -> None:
        """A user or moderator deletes a message (a user's or the bot's): later edits, fetches
        and replies to it get 404 Unknown Message (10008), as on Discord."""
        record = self._records.get(message_id)
        if record is not None:
            self._delete_message(record)
            await self._echo("MESSAGE_DELETE", record)
        elif self._payloads.pop(message_id, None) is None:
            raise ValueError(f"no message {message_id}")
        await self._notify()

    async def dispatch(self, event: str, data: JSON, *, guild: bool = True) -> None:
        """Dispatch a raw event to the shard of the guild (guild=False: shard 0)."""
        session = self._target(guild)
        async with session.lock:
            await self._emit(session, event, data)
        await self._notify()

    async def drop_connection(self, *, shard_id: int | None = None, code: int = 4000) -> None:
        """Close gateway connections with a resumable code; dispatches wait for the RESUME."""
        sockets = []
        for shard, session in list(self._live.items()):
            if shard_id is not None and shard != shard_id:
                continue
            async with session.lock:
                if session.ws is not None:
                    sockets.append(session.ws)
                    session.ws = None
        for ws in sockets:
            await ws.close(code=code, message=b"Unknown error.")
        await self._notify()

    async def request_reconnect(self, *, shard_id: int = 0) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        session = self._live[shard_id]
        if session.ws is not None:
            await self._send(session.ws, {"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, *, shard_id: int = 0, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; unless resumable, the session is forgotten."""
        session = self._live[shard_id]
        if not resumable:
            self._sessions.pop(session.id, None)
        if session.ws is not None:
            await self._send(session.ws, {"op": 9, "d": resumable, "s": None, "t": None})

    # --- the world as JSON ----------------------------------------------------------------

    def _snowflake(self) -> int:
        value = (int(time.time() * 1000) - DISCORD_EPOCH) << 22
        self._last_id = max(value, self._last_id + 1)
        return self._last_id

    def _user(self, user_id: int) -> _User:
        if user_id not in self.users:
            self.users[user_id] = _User(user_id, f"user{user_id}", f"User {user_id}")
        return self.users[user_id]

    def _user_json(self, user_id: int) -> JSON:
        user = self._user(user_id)
        data: JSON = {
            "id": str(user.id), "username": user.username, "discriminator": "0",
            "global_name": user.global_name, "avatar": None, "avatar_decoration_data": None,
            "banner": None, "accent_color": None, "public_flags": 0, "flags": 0,
            "collectibles": None, "primary_guild": None, "clan": None,
        }  # fmt: skip
        if user.bot:
            data["bot"] = True
        return data

    def _member_json(self, user_id: int, *, with_user: bool, permissions: bool = False) -> JSON:
        data: JSON = {
            "nick": None, "avatar": None, "banner": None, "roles": [str(r) for r in
            self._user(user_id).roles], "joined_at": self._joined_at, "premium_since": None,
            "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None, "avatar_decoration_data": None,
        }  # fmt: skip
        if with_user:
            data["user"] = self._user_json(user_id)
        if permissions:
            data["permissions"] = str(self.permissions_of(user_id))
        return data

    def _mention_json(self, user_id: int, guild: bool) -> JSON:
        data = self._user_json(user_id)
        if guild:
            data["member"] = self._member_json(user_id, with_user=False)
        return data

    def _guild_json(self, *, gateway: bool) -> JSON:
        data: JSON = {
            "id": str(GUILD_ID), "name": "Test guild", "icon": None, "icon_hash": None,
            "splash": None, "discovery_splash": None, "owner_id": str(OWNER_ID),
            "afk_channel_id": None, "afk_timeout": 300, "widget_enabled": False,
            "widget_channel_id": None, "verification_level": 0,
            "default_message_notifications": 1, "explicit_content_filter": 0,
            "roles": list(self.roles.values()), "emojis": [], "stickers": [], "features": [],
            "mfa_level": 0, "application_id": None, "system_channel_id": str(GENERAL_ID),
            "system_channel_flags": 0, "rules_channel_id": None, "max_presences": None,
            "max_members": 500000, "vanity_url_code": None, "description": None,
            "banner": None, "premium_tier": 0, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None,
            "max_video_channel_users": 25, "max_stage_video_channel_users": 50,
            "nsfw_level": 0, "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None, "incidents_data": None, "nsfw": False,
        }  # fmt: skip
        if gateway:
            channels = [c for c in self._channels.values() if c["type"] != 11]
            data.update({
                "unavailable": False, "large": False, "lazy": True,
                "member_count": len(self.users), "joined_at": self._joined_at,
                "members": [self._member_json(u, with_user=True) for u in self.users],
                "channels": channels,
                "threads": [c for c in self._channels.values() if c["type"] == 11],
                "presences": [], "voice_states": [], "stage_instances": [],
                "guild_scheduled_events": [], "soundboard_sounds": [],
                "embedded_activities": [], "application_command_counts": {},
            })  # fmt: skip
        return data

    def _channel_json(self, channel_id: int, *, viewer: int | None = None) -> JSON:
        if channel_id in self._dm_users:
            return {"id": str(channel_id), "type": 1, "last_message_id": None, "flags": 0,
                    "recipients": [self._user_json(self._dm_users[channel_id])]}  # fmt: skip
        data = {**self._channels[channel_id], "guild_id": str(GUILD_ID)}
        if viewer is not None:
            data["permissions"] = str(self.permissions_of(viewer))
        return data

    def _ready_json(self, session: _Session, owns_guild: bool) -> JSON:
        user = self._user_json(BOT_ID)
        user.update({"verified": True, "mfa_enabled": False, "email": None})
        data: JSON = {
            "v": API_VERSION, "user": user, "user_settings": {}, "session_type": "normal",
            "session_id": session.id, "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": str(GUILD_ID), "unavailable": True}] if owns_guild else [],
            "private_channels": [], "relationships": [], "presences": [],
            "guild_join_requests": [], "geo_ordered_rtc_regions": ["emulated"], "auth": {},
            "application": {"id": str(APPLICATION_ID), "flags": 0},
            "_trace": ["discord-emulator"],
        }  # fmt: skip
        if session.sent_shard:
            data["shard"] = list(session.shard)
        return data

    def _application_json(self) -> JSON:
        return {
            "id": str(APPLICATION_ID), "name": BOT_NAME, "icon": None, "description": "",
            "summary": "", "type": None, "hook": True, "bot_public": True,
            "bot_require_code_grant": False, "verify_key": "0" * 64, "flags": 0,
            "owner": self._user_json(OWNER_ID), "team": None, "bot": self._user_json(BOT_ID),
            "rpc_origins": [], "redirect_uris": [], "interactions_endpoint_url": None,
            "role_connections_verification_url": None, "tags": [],
            "integration_types_config": {"0": {}}, "approximate_guild_count": 1,
            "terms_of_service_url": None, "privacy_policy_url": None,
        }  # fmt: skip

    def _reference_json(self, referenced: JSON) -> JSON:
        data: JSON = {"type": 0, "message_id": referenced["id"],
                      "channel_id": referenced["channel_id"]}  # fmt: skip
        if int(referenced["channel_id"]) in self._channels:
            data["guild_id"] = str(GUILD_ID)
        return data

    @staticmethod
    def _as_referenced(payload: JSON) -> JSON:
        skip = {"referenced_message", "member", "guild_id"}
        return {k: v for k, v in payload.items() if k not in skip}

    # --- the gateway ----------------------------------------------------------------------

    def _target(self, guild: bool) -> _Session:
        if not self._live:
            raise RuntimeError("no gateway session: connect a client first")
        count = next(iter(self._live.values())).shard[1]
        shard = (GUILD_ID >> 22) % count if guild else 0
        try:
            return self._live[shard]
        except KeyError:
            raise RuntimeError(f"shard {shard} has no gateway session") from None

    @staticmethod
    def _subscribed(session: _Session, guild: bool) -> bool:
        return bool(session.intents & (INTENT_GUILD_MESSAGES if guild else INTENT_DIRECT_MESSAGES))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @staticmethod
    async def _send(ws: web.WebSocketResponse, frame: JSON | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(text)

    async def _emit(self, session: _Session, event: str, data: JSON) -> None:
        """Number, keep and (when connected) send a dispatch; hold session.lock."""
        session.seq += 1
        text = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.events.append((session.seq, text))
        self.dispatched.append(event)
        if session.ws is not None:
            await self._send(session.ws, text)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        session: _Session | None = None
        try:
            await self._send(ws, {"op": 10, "s": None, "t": None,
                                  "d": {"heartbeat_interval": HEARTBEAT_INTERVAL,
                                        "_trace": ["discord-emulator"]}})  # fmt: skip
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                try:
                    frame = json.loads(message.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                session = await self._on_frame(ws, session, op, frame.get("d"))
                await self._notify()
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            await self._notify()
        return ws

    async def _on_frame(
        self, ws: web.WebSocketResponse, session: _Session | None, op: Any, data: Any
    ) -> _Session | None:
        if op == 1:
            self.heartbeats += 1
            await self._send(ws, {"op": 11, "d": None, "s": None, "t": None})
            return session
        if op in (2, 6):
            if session is not None:
                await ws.close(code=4005, message=b"Already authenticated.")
                return session
            if not isinstance(data, dict) or data.get("token") != self.token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return None
            return await (self._identify(ws, data) if op == 2 else self._resume(ws, data))
        if session is None:
            await ws.close(code=4003, message=b"Not authenticated.")
            return None
        if op == 3:
            self.presences.append(data)
        elif op == 8:
            await self._request_members(session, data)
        elif op != 4:  # voice state updates are accepted and ignored
            await ws.close(code=4001, message=b"Unknown opcode.")
        return session

    async def _identify(self, ws: web.WebSocketResponse, data: JSON) -> _Session | None:
        intents = data.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0:
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return None
        shard = data.get("shard", [0, 1])
        valid = (
            isinstance(shard, list)
            and len(shard) == 2
            and all(isinstance(n, int) for n in shard)
            and 0 <= shard[0] < shard[1]
        )
        if not valid:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        self.identify_count += 1
        self.intents = intents
        if isinstance(data.get("presence"), dict):
            self.presences.append(data["presence"])
        session = _Session(id=secrets.token_hex(16), shard=(shard[0], shard[1]),
                           intents=intents, sent_shard="shard" in data)  # fmt: skip
        self._sessions[session.id] = session
        self._live[shard[0]] = session
        owns_guild = (GUILD_ID >> 22) % shard[1] == shard[0]
        async with session.lock:
            session.ws = ws
            await self._emit(session, "READY", self._ready_json(session, owns_guild))
            if owns_guild:
                await self._emit(session, "GUILD_CREATE", self._guild_json(gateway=True))
            session.ready = True
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> _Session | None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None:
            self.invalid_sessions += 1
            await self._send(ws, {"op": 9, "d": False, "s": None, "t": None})
            return None
        seq = data.get("seq")
        if not isinstance(seq, int):
            seq = 0  # null: replay everything
        async with session.lock:
            session.ws = ws
            for number, text in session.events:
                if number > seq:
                    await self._send(ws, text)
            await self._emit(session, "RESUMED", {"_trace": ["discord-emulator"]})
        self.resume_count += 1
        self._live[session.shard[0]] = session
        return session

    async def _request_members(self, session: _Session, data: Any) -> None:
        if not isinstance(data, dict) or str(data.get("guild_id")) != str(GUILD_ID):
            return
        wanted = data.get("user_ids")
        query = str(data.get("query") or "").lower()
        limit = int(data.get("limit") or 0)
        if wanted is not None:
            ids = [int(u) for u in (wanted if isinstance(wanted, list) else [wanted])]
            found = [u for u in ids if u in self.users]
            not_found = [str(u) for u in ids if u not in self.users]
        else:
            found = [u.id for u in self.users.values() if u.username.startswith(query)]
            not_found = []
        if limit:
            found = found[:limit]
        chunk: JSON = {
            "guild_id": str(GUILD_ID), "chunk_index": 0, "chunk_count": 1,
            "members": [self._member_json(u, with_user=True) for u in found],
            "not_found": not_found,
        }  # fmt: skip
        if data.get("presences"):
            chunk["presences"] = []
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        async with session.lock:
            await self._emit(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _echo(self, event: str, record: MessageRecord) -> None:
        """Discord sends the bot its own non-ephemeral messages over the gateway too."""
        if record.ephemeral:
            return
        guild = record.channel_id in self._channels
        try:
            session = self._target(guild)
        except RuntimeError:
            return
        if not self._subscribed(session, guild):
            return
        if event == "MESSAGE_DELETE":
            data: JSON = {"id": str(record.id), "channel_id": str(record.channel_id)}
            if guild:
                data["guild_id"] = str(GUILD_ID)
        else:
            data = dict(self._payloads[record.id])
            if guild:
                data["guild_id"] = str(GUILD_ID)
                data["member"] = self._member_json(BOT_ID, with_user=False)
        async with session.lock:
            await self._emit(session, event, data)

    # --- REST plumbing --------------------------------------------------------------------

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        # Not web.json_response: its "; charset=utf-8" makes discord.py treat the body as text.
        return web.Response(
            status=status, body=json.dumps(data).encode(), content_type="application/json"
        )

    def _error(
        self, status: int, message: str, code: int, errors: JSON | None = None
    ) -> web.Response:
        body: JSON = {"message": message, "code": code}
        if errors is not None:
            body["errors"] = errors
        return self._json(body, status)

    def _form_error(self, path: list[str], code: str, message: str) -> _Reject:
        errors: JSON = {"_errors": [{"code": code, "message": message}]}
        for key in reversed(path):
            errors = {key: errors}
        return _Reject(self._error(400, "Invalid Form Body", 50035, errors))

    def _add(
        self,
        app: web.Application,
        method: str,
        path: str,
        handler: Handler,
        *,
        auth: bool = True,
        op: str | None = None,
    ) -> None:
        bucket = hashlib.sha1(f"{method} {path}".encode()).hexdigest()[:32]

        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path.removeprefix(API_PREFIX)))
            try:
                response = await self._guarded(request, handler, auth, op, bucket)
            finally:
                await self._notify()
            response.headers["Via"] = "1.1 google"
            return response

        app.router.add_route(method, API_PREFIX + path, wrapped)

    async def _guarded(
        self, request: web.Request, handler: Handler, auth: bool, op: str | None, bucket: str
    ) -> web.StreamResponse:
        if auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return self._error(401, "401: Unauthorized", 0)
        if op is not None and self.fail_next.get(op):
            retry_after = self.fail_next[op].pop(0)
            self.rate_limited += 1
            return self._too_many(retry_after, bucket)
        try:
            response = await handler(request)
        except _Reject as rejected:
            response = rejected.response
        now = time.time()
        response.headers.update({
            "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4",
            "X-RateLimit-Reset": f"{now + 1:.3f}", "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        })  # fmt: skip
        return response

    def _too_many(self, retry_after: float, bucket: str) -> web.Response:
        body = {"message": "You are being rate limited.", "retry_after": retry_after,
                "global": False, "code": 0}  # fmt: skip
        response = self._json(body, 429)
        response.headers.update({
            "Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "user",
        })  # fmt: skip
        return response

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        route = (request.method, request.path.removeprefix(API_PREFIX))
        self.requests.append(route)
        self.unknown_routes.append(route)
        await self._notify()
        return self._error(404, "404: Not Found", 0)

    async def _read_json(self, request: web.Request) -> Any:
        if not request.body_exists:
            return None
        try:
            return json.loads(await request.text())
        except ValueError:
            raise _Reject(
                self._error(400, "The request body contains invalid JSON.", 50109)
            ) from None

    async def _message_body(self, request: web.Request) -> tuple[JSON, list[str]]:
        """A JSON body, or multipart with payload_json and files; (payload, file names)."""
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            files = [v.filename for v in form.values() if isinstance(v, web.FileField)]
            raw = form.get("payload_json")
            body: Any = json.loads(raw) if isinstance(raw, (str, bytes)) else {}
        else:
            files = []
            body = await self._read_json(request)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise self._form_error([], "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        return body, files

    def _channel_id(self, request: web.Request) -> int:
        try:
            channel_id = int(request.match_info["channel_id"])
        except ValueError:
            raise _Reject(self._error(404, "Unknown Channel", 10003)) from None
        if channel_id not in self._channels and channel_id not in self._dm_users:
            raise _Reject(self._error(404, "Unknown Channel", 10003))
        return channel_id

    def _check_message(self, body: JSON, files: list[str], *, creating: bool) -> None:
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise self._form_error(["content"], "BASE_TYPE_STRING", "Must be a string.")
        if content is not None and len(content) > MAX_CONTENT:
            raise self._form_error(
                ["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        if len(body.get("embeds") or []) > 10:
            raise self._form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer.")
        allowed = body.get("allowed_mentions")
        if allowed is not None:
            if not isinstance(allowed, dict):
                raise self._form_error(["allowed_mentions"], "DICT_TYPE_CONVERT", "Not a dict.")
            parse = allowed.get("parse") or []
            for kind in ("users", "roles"):
                if kind in parse and allowed.get(kind):
                    raise self._form_error(
                        ["allowed_mentions"], "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                        f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                    )  # fmt: skip
        keys = ("embeds", "sticker_ids", "components", "poll", "attachments")
        if creating and not content and not files and not any(body.get(k) for k in keys):
            raise _Reject(self._error(400, "Cannot send an empty message", 50006))

    # --- messages -------------------------------------------------------------------------

    def _pings(
        self, content: str, allowed: JSON | None, replied_author: int | None
    ) -> tuple[bool, list[int], list[int]]:
        """(@everyone/@here pings, users pinged, roles pinged) under allowed_mentions."""
        if allowed is None:  # Discord's default: parse everything, ping the replied user
            parse, users, roles, replied_user = {"everyone", "users", "roles"}, set(), set(), True
        else:
            parse = set(allowed.get("parse") or [])
            users = {int(u) for u in allowed.get("users") or []}
            roles = {int(r) for r in allowed.get("roles") or []}
            replied_user = bool(allowed.get("replied_user", False))
        everyone = bool(_EVERYONE.search(content)) and "everyone" in parse
        pinged = [u for u in dict.fromkeys(int(m) for m in _USER_MENTION.findall(content))
                  if "users" in parse or u in users]  # fmt: skip
        if replied_author is not None and replied_user and replied_author not in pinged:
            pinged.append(replied_author)
        role_ids = [r for r in dict.fromkeys(int(m) for m in _ROLE_MENTION.findall(content))
                    if "roles" in parse or r in roles]  # fmt: skip
        return everyone, [u for u in pinged if u != BOT_ID], role_ids

    def _apply_mentions(
        self, record: MessageRecord, payload: JSON, allowed: JSON | None, replied: int | None
    ) -> None:
        everyone, users, roles = self._pings(record.content, allowed, replied)
        payload["mention_everyone"] = everyone
        payload["mentions"] = [self._user_json(u) for u in users if u in self.users]
        payload["mention_roles"] = [str(r) for r in roles]
        record.allowed_mentions = allowed
        if (everyone or users or roles) and not record.ephemeral:
            record.would_ping = True

    def _new_message(
        self,
        channel_id: int,
        body: JSON,
        files: list[str],
        *,
        via: Literal["channel", "followup", "original"],
        flags: int,
        interaction: InteractionRecord | None = None,
    ) -> MessageRecord:
        """Create a message by the bot (validated already) and its payload."""
        message_id = self._snowflake()
        content = body.get("content") or ""
        referenced: JSON | None = None
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            referenced = self._payloads.get(int(reference["message_id"]))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise self._form_error(
                    ["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        record = MessageRecord(
            id=message_id, channel_id=channel_id, content=content, via=via,
            reference=int(referenced["id"]) if referenced else None,
            ephemeral=bool(flags & EPHEMERAL), loading=bool(flags & LOADING),
            interaction_id=interaction.id if interaction else None, history=[content],
            attachments=files,
        )  # fmt: skip
        kind = 20 if via == "original" else 19 if referenced else 0
        payload: JSON = {
            "id": str(message_id), "type": kind, "channel_id": str(channel_id),
            "author": self._user_json(BOT_ID), "content": content, "timestamp": _now(),
            "edited_timestamp": None, "tts": bool(body.get("tts", False)),
            "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [self._attachment_json(name) for name in files],
            "embeds": body.get("embeds") or [], "pinned": False, "flags": flags,
            "components": body.get("components") or [],
        }  # fmt: skip
        if body.get("nonce") is not None:
            payload["nonce"] = body["nonce"]
        if referenced is not None:
            payload["message_reference"] = self._reference_json(referenced)
            payload["referenced_message"] = self._as_referenced(referenced)
        if interaction is not None:
            payload["webhook_id"] = str(APPLICATION_ID)
            payload["application_id"] = str(APPLICATION_ID)
            payload["interaction_metadata"] = self._interaction_metadata(interaction)
        replied = int(referenced["author"]["id"]) if referenced else None
        allowed = body.get("allowed_mentions")
        self._apply_mentions(
            record, payload, allowed if isinstance(allowed, dict) else None, replied
        )
        self._payloads[message_id] = payload
        self._records[message_id] = record
        self.messages.append(record)
        return record

    def _edit_message(self, record: MessageRecord, body: JSON, files: list[str]) -> JSON:
        """Apply an edit (validated already) to one of the bot's messages; the new payload."""
        payload = self._payloads[record.id]
        content = (body.get("content") or "") if "content" in body else record.content
        embeds = (body.get("embeds") or []) if "embeds" in body else payload["embeds"]
        attachments = payload["attachments"]
        if "attachments" in body or files:
            kept = [
                a
                for a in payload["attachments"]
                if any(str(b.get("id")) == a["id"] for b in body.get("attachments") or [])
            ]
            attachments = kept + [self._attachment_json(name) for name in files]
        components = payload["components"]
        if "components" in body:
            components = body.get("components") or []
        if not (content or embeds or attachments or components):
            raise _Reject(self._error(400, "Cannot send an empty message", 50006))
        flags = payload["flags"] & ~LOADING
        if "flags" in body:
            keep = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS  # ephemerality is fixed at creation
            flags = (flags & EPHEMERAL) | (int(body["flags"] or 0) & keep)
        payload.update(content=content, embeds=embeds, attachments=attachments,
                       components=components, flags=flags, edited_timestamp=_now())  # fmt: skip
        record.content = content
        record.loading = False
        record.edits += 1
        record.history.append(content)
        record.attachments = [a["filename"] for a in attachments]
        allowed = body.get("allowed_mentions")
        self._apply_mentions(record, payload, allowed if isinstance(allowed, dict) else None, None)
        return payload

    def _delete_message(self, record: MessageRecord) -> None:
        record.deleted = True
        self._payloads.pop(record.id, None)

    def _attachment_json(self, name: str) -> JSON:
        attachment_id = self._snowflake()
        url = f"{self.rest_base}/attachments/{attachment_id}/{name}"
        return {"id": str(attachment_id), "filename": name, "size": 0, "url": url,
                "proxy_url": url, "content_type": "application/octet-stream"}  # fmt: skip

    def _interaction_metadata(self, interaction: InteractionRecord) -> JSON:
        data: JSON = {
            "id": interaction.id, "type": 2, "name": interaction.name, "command_type": 1,
            "user": self._user_json(interaction.user_id),
            "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
        }  # fmt: skip
        if interaction.original is not None:
            data["original_response_message_id"] = str(interaction.original.id)
        return data

    # --- routes ---------------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        add = self._add
        app.router.add_route("GET", "/gateway", self._gateway)
        add(app, "GET", "/gateway", self._get_gateway, auth=False)
        add(app, "GET", "/gateway/bot", self._get_gateway_bot)
        add(app, "GET", "/users/@me", self._get_me)
        add(app, "POST", "/users/@me/channels", self._create_dm)
        add(app, "GET", "/users/{user_id}", self._get_user)
        add(app, "GET", "/oauth2/applications/@me", self._get_application)
        add(app, "GET", "/applications/@me", self._get_application)
        add(app, "GET", "/applications/{app_id}/commands", self._get_commands)
        add(app, "PUT", "/applications/{app_id}/commands", self._put_commands)
        add(app, "GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands)
        add(app, "PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands)
        add(app, "GET", "/guilds/{guild_id}", self._get_guild)
        add(app, "GET", "/guilds/{guild_id}/channels", self._get_guild_channels)
        add(app, "GET", "/guilds/{guild_id}/members/{user_id}", self._get_member)
        add(app, "GET", "/channels/{channel_id}", self._get_channel)
        add(app, "GET", "/channels/{channel_id}/messages", self._get_history)
        add(app, "POST", "/channels/{channel_id}/messages", self._post_message, op="send")
        add(app, "POST", "/channels/{channel_id}/typing", self._post_typing)
        message = "/channels/{channel_id}/messages/{message_id}"
        add(app, "GET", message, self._get_message)
        add(app, "PATCH", message, self._patch_message, op="edit")
        add(app, "DELETE", message, self._delete_channel_message)
        add(app, "PUT", message + "/reactions/{emoji}/@me", self._put_reaction)
        add(app, "DELETE", message + "/reactions/{emoji}/@me", self._delete_reaction)
        add(app, "POST", "/interactions/{interaction_id}/{token}/callback", self._callback,
            auth=False, op="callback")  # fmt: skip
        hook = "/webhooks/{app_id}/{token}"
        add(app, "POST", hook, self._post_followup, auth=False, op="followup")
        for target, op in (("@original", "edit_original"), ("{message_id}", "edit_followup")):
            path = f"{hook}/messages/{target}"
            add(app, "GET", path, self._get_webhook_message, auth=False)
            add(app, "PATCH", path, self._patch_webhook_message, auth=False, op=op)
            add(app, "DELETE", path, self._delete_webhook_message, auth=False)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    async def _get_gateway(self, _request: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url})

    async def _get_gateway_bot(self, _request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": max(0, 1000 - self.identify_count),
                 "reset_after": 86_400_000, "max_concurrency": 1}  # fmt: skip
        return self._json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _get_me(self, _request: web.Request) -> web.Response:
        user = self._user_json(BOT_ID)
        user.update({"verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"})
        return self._json(user)

    async def _get_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if not user_id.isdigit() or int(user_id) not in self.users:
            return self._error(404, "Unknown User", 10013)
        return self._json(self._user_json(int(user_id)))

    async def _create_dm(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        recipient = body.get("recipient_id") if isinstance(body, dict) else None
        if recipient is None or not str(recipient).isdigit() or int(recipient) not in self.users:
            raise self._form_error(["recipient_id"], "NUMBER_TYPE_COERCE", "Unknown user.")
        return self._json(self._channel_json(self.dm_channel_id(int(recipient))))

    async def _get_application(self, _request: web.Request) -> web.Response:
        return self._json(self._application_json())

    def _command_scope(self, request: web.Request) -> int | None:
        """The guild id of a command route (None: global), after checking the ids."""
        if request.match_info["app_id"] != str(APPLICATION_ID):
            raise _Reject(self._error(403, "Missing Access", 50001))
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return None
        if guild_id != str(GUILD_ID):
            raise _Reject(self._error(404, "Unknown Guild", 10004))
        return GUILD_ID

    async def _get_commands(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        if guild_id is None:
            return self._json(self.global_commands)
        return self._json(self.guild_commands.get(guild_id, []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        body = await self._read_json(request)
        if not isinstance(body, list):
            raise self._form_error([], "BASE_TYPE_ARRAY", "Must be an array.")
        previous = (
            self.global_commands if guild_id is None else self.guild_commands.get(guild_id, [])
        )
        stored: list[JSON] = []
        for index, command in enumerate(body):
            self._check_command(index, command, stored)
            kind = command.get("type", 1)
            same = next((c for c in previous if c["name"] == command["name"]
                         and c.get("type", 1) == kind), None)  # fmt: skip
            entry: JSON = {
                "type": 1, "description": "", "options": [], "default_member_permissions": None,
                "dm_permission": True, "nsfw": False, "contexts": None, "integration_types": [0],
            }  # fmt: skip
            entry.update({k: v for k, v in command.items()
                          if k not in ("id", "application_id", "version", "guild_id")})  # fmt: skip
            entry["id"] = same["id"] if same else str(self._snowflake())
            entry["application_id"] = str(APPLICATION_ID)
            entry["version"] = str(self._snowflake())
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        if guild_id is None:
            self.global_commands = stored
        else:
            self.guild_commands[guild_id] = stored
        self.sync_count += 1
        return self._json(stored)

    def _check_command(self, index: int, command: Any, stored: list[JSON]) -> None:
        where = [str(index)]
        if not isinstance(command, dict):
            raise self._form_error(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        name, kind = command.get("name"), command.get("type", 1)
        if not isinstance(name, str) or not _COMMAND_NAME.match(name):
            raise self._form_error([*where, "name"], "APPLICATION_COMMAND_INVALID_NAME",
                                   "Command name is invalid")  # fmt: skip
        if kind == 1:
            if name != name.lower():
                raise self._form_error([*where, "name"], "APPLICATION_COMMAND_INVALID_NAME",
                                       "Command name is invalid")  # fmt: skip
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                raise self._form_error([*where, "description"], "BASE_TYPE_BAD_LENGTH",
                                       "Must be between 1 and 100 in length.")  # fmt: skip
        if any(c["name"] == name and c.get("type", 1) == kind for c in stored):
            raise self._form_error(where, "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                   f"Application command names must be unique: {name}")  # fmt: skip

    def _find_command(self, name: str, guild: bool) -> tuple[JSON | None, bool]:
        if guild:
            for command in self.guild_commands.get(GUILD_ID, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, True
        for command in self.global_commands:
            if command["name"] == name and command.get("type", 1) == 1:
                return command, False
        return None, False

    def _build_options(
        self, definitions: list[JSON], given: dict[str, Any], resolved: JSON, guild: bool
    ) -> list[JSON]:
        built: list[JSON] = []
        for name, value in given.items():
            definition = next((d for d in definitions if d.get("name") == name), None)
            kind = int(definition["type"]) if definition else _infer_option_type(value)
            if kind in (1, 2):
                nested = (definition or {}).get("options") or []
                inner = value if isinstance(value, dict) else {}
                options = self._build_options(nested, inner, resolved, guild)
                built.append({"name": name, "type": kind, "options": options})
                continue
            built.append({"name": name, "type": kind,
                          "value": self._option_value(kind, value, resolved, guild)})  # fmt: skip
        return built

    def _option_value(self, kind: int, value: Any, resolved: JSON, guild: bool) -> Any:
        if kind == 3:
            return str(value)
        if kind == 4:
            return int(value)
        if kind == 5:
            return bool(value)
        if kind == 10:
            return value if isinstance(value, int | float) else float(value)
        snowflake = int(value)
        if kind == 8 or (kind == 9 and snowflake in self.roles):
            resolved.setdefault("roles", {})[str(snowflake)] = self.roles[snowflake]
        elif kind == 7:
            channel = self._channel_json(snowflake, viewer=BOT_ID)
            resolved.setdefault("channels", {})[str(snowflake)] = channel
        elif kind in (6, 9):
            resolved.setdefault("users", {})[str(snowflake)] = self._user_json(snowflake)
            if guild:
                member = self._member_json(snowflake, with_user=False, permissions=True)
                resolved.setdefault("members", {})[str(snowflake)] = member
        return str(snowflake)

    async def _get_guild(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(GUILD_ID):
            return self._error(404, "Unknown Guild", 10004)
        return self._json(self._guild_json(gateway=False))

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(GUILD_ID):
            return self._error(404, "Unknown Guild", 10004)
        return self._json([self._channel_json(c) for c, d in self._channels.items()
                           if d["type"] != 11])  # fmt: skip

    async def _get_member(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(GUILD_ID):
            return self._error(404, "Unknown Guild", 10004)
        user_id = request.match_info["user_id"]
        if not user_id.isdigit() or int(user_id) not in self.users:
            return self._error(404, "Unknown Member", 10007)
        return self._json(self._member_json(int(user_id), with_user=True))

    async def _get_channel(self, request: web.Request) -> web.Response:
        return self._json(self._channel_json(self._channel_id(request)))

    async def _get_history(self, request: web.Request) -> web.Response:
        channel = str(self._channel_id(request))
        limit = min(100, max(1, int(request.query.get("limit", "50"))))
        before = int(request.query.get("before", str(1 << 63)))
        after = int(request.query.get("after", "0"))
        found = sorted((p for p in self._payloads.values()
                        if p["channel_id"] == channel and not p["flags"] & EPHEMERAL
                        and after < int(p["id"]) < before),
                       key=lambda p: int(p["id"]), reverse=True)  # fmt: skip
        if "after" in request.query and "before" not in request.query:
            found = found[-limit:]
        return self._json(found[:limit])

    def _channel_message(self, request: web.Request) -> tuple[int, int]:
        channel_id = self._channel_id(request)
        message_id = request.match_info["message_id"]
        if not message_id.isdigit():
            raise _Reject(self._error(404, "Unknown Message", 10008))
        payload = self._payloads.get(int(message_id))
        if (
            payload is None
            or payload["channel_id"] != str(channel_id)
            or payload["flags"] & EPHEMERAL
        ):
            raise _Reject(self._error(404, "Unknown Message", 10008))
        return channel_id, int(message_id)

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = self._channel_id(request)
        body, files = await self._message_body(request)
        self._check_message(body, files, creating=True)
        flags = int(body.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS)
        record = self._new_message(channel_id, body, files, via="channel", flags=flags)
        await self._echo("MESSAGE_CREATE", record)
        return self._json(self._payloads[record.id])

    async def _get_message(self, request: web.Request) -> web.Response:
        _, message_id = self._channel_message(request)
        return self._json(self._payloads[message_id])

    async def _patch_message(self, request: web.Request) -> web.Response:
        _, message_id = self._channel_message(request)
        record = self._records.get(message_id)
        if record is None:
            return self._error(403, "Cannot edit a message authored by another user", 50005)
        body, files = await self._message_body(request)
        self._check_message(body, files, creating=False)
        payload = self._edit_message(record, body, files)
        await self._echo("MESSAGE_UPDATE", record)
        return self._json(payload)

    async def _delete_channel_message(self, request: web.Request) -> web.Response:
        _, message_id = self._channel_message(request)
        record = self._records.get(message_id)
        if record is None:
            return self._error(403, "Missing Permissions", 50013)
        self._delete_message(record)
        await self._echo("MESSAGE_DELETE", record)
        return web.Response(status=204)

    async def _post_typing(self, request: web.Request) -> web.Response:
        self.typing.append(self._channel_id(request))
        return web.Response(status=204)

    async def _put_reaction(self, request: web.Request) -> web.Response:
        channel_id, message_id = self._channel_message(request)
        reaction = (channel_id, message_id, request.match_info["emoji"])
        if reaction not in self.reactions:
            self.reactions.append(reaction)
        return web.Response(status=204)

    async def _delete_reaction(self, request: web.Request) -> web.Response:
        channel_id, message_id = self._channel_message(request)
        reaction = (channel_id, message_id, request.match_info["emoji"])
        if reaction in self.reactions:
            self.reactions.remove(reaction)
        return web.Response(status=204)

    # --- interactions ---------------------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        record = self.interactions.get(request.match_info["interaction_id"])
        if record is None or record.token != request.match_info["token"]:
            return self._error(404, "Unknown interaction", 10062)
        if record.callbacks:
            return self._error(400, "Interaction has already been acknowledged.", 40060)
        if time.monotonic() - record.created > self.callback_deadline:
            return self._error(404, "Unknown interaction", 10062)
        body, files = await self._message_body(request)
        kind = body.get("type")
        if kind not in _CALLBACK_TYPES:
            raise self._form_error(
                ["type"], "BASE_TYPE_CHOICES", f"Value must be one of {sorted(_CALLBACK_TYPES)}."
            )
        data = body.get("data") or {}
        if not isinstance(data, dict):
            raise self._form_error(["data"], "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        ephemeral = int(data.get("flags") or 0) & EPHEMERAL
        message: MessageRecord | None = None
        if kind == 4:
            self._check_message(data, files, creating=True)
            flags = ephemeral | (
                int(data.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS)
            )
            message = self._new_message(record.channel_id, data, files, via="original",
                                        flags=flags, interaction=record)  # fmt: skip
        elif kind == 5:
            message = self._new_message(record.channel_id, {}, [], via="original",
                                        flags=LOADING | ephemeral, interaction=record)  # fmt: skip
            record.ephemeral_defer = bool(ephemeral)
        record.callbacks.append(kind)
        if message is not None:
            record.original = message
            await self._echo("MESSAGE_CREATE", message)
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        answer: JSON = {"interaction": {
            "id": record.id, "type": 2,
            "response_message_id": str(message.id) if message else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(message and message.ephemeral),
        }}  # fmt: skip
        if message is not None:
            answer["resource"] = {"type": kind, "message": self._payloads[message.id]}
        return self._json(answer)

    def _webhook_interaction(self, request: web.Request) -> InteractionRecord:
        if request.match_info["app_id"] != str(APPLICATION_ID):
            raise _Reject(self._error(404, "Unknown Webhook", 10015))
        record = self._by_token.get(request.match_info["token"])
        if record is None or time.monotonic() - record.created > self.token_lifetime:
            raise _Reject(self._error(401, "Invalid Webhook Token", 50027))
        return record

    def _webhook_target(self, request: web.Request) -> MessageRecord:
        record = self._webhook_interaction(request)
        wanted = request.match_info.get("message_id", "@original")
        candidates = [record.original, *record.followups]
        for message in candidates:
            if message is None or message.deleted:
                continue
            if wanted == str(message.id) or (wanted == "@original" and message is record.original):
                return message
        raise _Reject(self._error(404, "Unknown Message", 10008))

    async def _post_followup(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        if not record.callbacks:
            return self._error(404, "Unknown Webhook", 10015)
        body, files = await self._message_body(request)
        self._check_message(body, files, creating=True)
        original = record.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up to a deferred response fills the "thinking…" message.
            payload = self._edit_message(original, body, files)
            await self._echo("MESSAGE_UPDATE", original)
            return self._json(payload)
        keep = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS
        flags = int(body.get("flags") or 0) & keep
        message = self._new_message(
            record.channel_id, body, files, via="followup", flags=flags, interaction=record
        )
        record.followups.append(message)
        await self._echo("MESSAGE_CREATE", message)
        return self._json(self._payloads[message.id])  # interaction follow-ups always "wait"

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        return self._json(self._payloads[self._webhook_target(request).id])

    async def _patch_webhook_message(self, request: web.Request) -> web.Response:
        message = self._webhook_target(request)
        body, files = await self._message_body(request)
        self._check_message(body, files, creating=False)
        payload = self._edit_message(message, body, files)
        await self._echo("MESSAGE_UPDATE", message)
        return self._json(payload)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        message = self._webhook_target(request)
        self._delete_message(message)
        await self._echo("MESSAGE_DELETE", message)
        return web.Response(status=204)
