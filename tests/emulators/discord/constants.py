"""The emulated Discord's fixed facts: API version, the ids of its one guild and its people,
permission bits, gateway intents, message flags and limits.

Sources: https://discord.com/developers/docs/reference (API versions, snowflakes),
https://discord.com/developers/docs/topics/permissions (permission bits),
https://discord.com/developers/docs/events/gateway#gateway-intents (intents),
https://discord.com/developers/docs/resources/message#message-object-message-flags (flags).
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

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
DM_BASE = 600000000000000000

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

MAX_CONTENT = 2000  # characters of a message's content
