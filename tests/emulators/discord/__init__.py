"""A local emulator of Discord's gateway and REST API (see server.py for its parts)."""

from tests.emulators.discord.constants import (
    ADMIN_ID,
    ADMINS_ROLE_ID,
    ALICE_ID,
    APPLICATION_ID,
    BOT_ID,
    BOT_NAME,
    BOT_ROLE_ID,
    GENERAL_ID,
    GUILD_ID,
    MANAGE_GUILD,
    OTHER_ID,
    OWNER_ID,
    THREAD_ID,
)
from tests.emulators.discord.records import InteractionRecord, MessageRecord
from tests.emulators.discord.server import DiscordEmulator

__all__ = [
    "ADMINS_ROLE_ID",
    "ADMIN_ID",
    "ALICE_ID",
    "APPLICATION_ID",
    "BOT_ID",
    "BOT_NAME",
    "BOT_ROLE_ID",
    "GENERAL_ID",
    "GUILD_ID",
    "MANAGE_GUILD",
    "OTHER_ID",
    "OWNER_ID",
    "THREAD_ID",
    "DiscordEmulator",
    "InteractionRecord",
    "MessageRecord",
]
