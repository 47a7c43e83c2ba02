"""What the emulated Discord holds: its one guild (roles, channels, a thread, members), DM
channels, every live message, the bot's answers, the commands it registered, and the logs and
counters that tests read.

One object that every part of the emulator (gateway, REST routes, interactions) reads and
changes; `DiscordEmulator` is this state with those parts built over it. Anything that changes
it calls `notify()`, which wakes `wait_for`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.emulators.discord.constants import (
    ADMIN_ID,
    ADMINISTRATOR,
    ADMINS_ROLE_ID,
    ALICE_ID,
    ALL_PERMISSIONS,
    BOT_ID,
    BOT_NAME,
    BOT_ROLE_ID,
    DISCORD_EPOCH,
    DM_BASE,
    EVERYONE_PERMISSIONS,
    GENERAL_ID,
    GUILD_ID,
    JSON,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    OTHER_ID,
    OWNER_ID,
    THREAD_ID,
)
from tests.emulators.discord.records import InteractionRecord, MessageRecord

__all__ = ["EmulatorState", "User", "now"]


def now() -> str:
    """A timestamp as Discord writes them (ISO 8601, microseconds, UTC)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class User:
    """A user of the emulated Discord (a member of its guild)."""

    id: int
    username: str
    global_name: str | None
    roles: list[int] = field(default_factory=list)
    bot: bool = False


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


class EmulatorState:
    """The emulated Discord's contents; the public attributes are what tests read."""

    def __init__(self, token: str) -> None:
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

        self.users: dict[int, User] = {
            BOT_ID: User(BOT_ID, BOT_NAME, None, [BOT_ROLE_ID], bot=True),
            ALICE_ID: User(ALICE_ID, "alice", "Alice"),
            ADMIN_ID: User(ADMIN_ID, "admin", "Admin", [ADMINS_ROLE_ID]),
            OWNER_ID: User(OWNER_ID, "owner", "Owner"),
        }
        self.roles: dict[int, JSON] = {
            GUILD_ID: _role(GUILD_ID, "@everyone", EVERYONE_PERMISSIONS, 0),
            ADMINS_ROLE_ID: _role(ADMINS_ROLE_ID, "admins", MANAGE_GUILD | MANAGE_MESSAGES, 1),
            BOT_ROLE_ID: _role(BOT_ROLE_ID, BOT_NAME, EVERYONE_PERMISSIONS, 2, managed=True,
                               tags={"bot_id": str(BOT_ID)}),
        }  # fmt: skip
        # The parts of the emulator share these; tests have no need of them.
        self.channels: dict[int, JSON] = {
            GENERAL_ID: _text_channel(GENERAL_ID, "general", 0),
            OTHER_ID: _text_channel(OTHER_ID, "other", 1),
            THREAD_ID: {
                "id": str(THREAD_ID), "type": 11, "name": "a thread",
                "guild_id": str(GUILD_ID), "parent_id": str(GENERAL_ID),
                "owner_id": str(ALICE_ID), "last_message_id": None, "message_count": 0,
                "member_count": 1, "total_message_sent": 0, "rate_limit_per_user": 0,
                "flags": 0,
                "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                    "archive_timestamp": now(), "locked": False,
                                    "create_timestamp": now()},
            },
        }  # fmt: skip
        self.joined_at = now()
        self.dm_users: dict[int, int] = {}  # DM channel id -> the user's id
        self.payloads: dict[int, JSON] = {}  # every live message (users' and the bot's)
        self.records: dict[int, MessageRecord] = {}  # the bot's messages by id
        self._last_id = 0
        self._changed = asyncio.Condition()

    async def notify(self) -> None:
        """Wake every `wait_for` to check its predicate again."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until predicate() is true; re-checked after every request and gateway frame."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    def snowflake(self) -> int:
        """A new id: milliseconds since Discord's epoch in the top bits, always increasing."""
        value = (int(time.time() * 1000) - DISCORD_EPOCH) << 22
        self._last_id = max(value, self._last_id + 1)
        return self._last_id

    def user(self, user_id: int) -> User:
        """A user by id; an id never seen becomes a new member."""
        if user_id not in self.users:
            self.users[user_id] = User(user_id, f"user{user_id}", f"User {user_id}")
        return self.users[user_id]

    def in_guild(self, channel_id: int, user_id: int) -> bool:
        """Whether channel_id is the guild's (False: user_id's DM); ValueError if neither."""
        guild = channel_id in self.channels
        if not guild and self.dm_users.get(channel_id) != user_id:
            raise ValueError(f"{channel_id} is neither a guild channel nor {user_id}'s DM")
        return guild

    def dm_channel_id(self, user_id: int) -> int:
        """The DM channel between the bot and a user (created on first use)."""
        self.user(user_id)
        channel_id = DM_BASE + user_id % 10**15
        self.dm_users[channel_id] = user_id
        return channel_id

    def permissions_of(self, user_id: int) -> int:
        """A member's guild permissions: @everyone's, plus their roles', all for the owner."""
        if user_id == OWNER_ID:
            return ALL_PERMISSIONS
        value = int(self.roles[GUILD_ID]["permissions"])
        for role_id in self.user(user_id).roles:
            value |= int(self.roles[role_id]["permissions"])
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def add_user(
        self, user_id: int, name: str, *, roles: Iterable[int] = (), bot: bool = False
    ) -> None:
        """Add a guild member (before the client connects, to have it in GUILD_CREATE)."""
        self.users[user_id] = User(user_id, name.lower(), name, list(roles), bot=bot)
