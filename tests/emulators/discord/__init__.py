"""A local emulator of Discord's gateway and REST API (see server.py)."""

from tests.emulators.discord.server import (
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
    DiscordEmulator,
    InteractionRecord,
    MessageRecord,
)

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
