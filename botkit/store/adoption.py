"""Chat adoption: chats stored before chat keys named the bot become the first bot's to start.

Chat keys are "BOT/ID" since several bots of one platform can share a database; a chat stored
before that has no "/" in its key, and no bot would find it again.
"""

from __future__ import annotations

import logging

from sqlalchemy import String, literal, update

from botkit.store.caches import Caches
from botkit.store.models import CHATS
from botkit.store.writer import Writer

__all__ = ["adopt_chats"]

log = logging.getLogger(__name__)


async def adopt_chats(writer: Writer, caches: Caches, platform: str, prefix: str) -> int:
    """Chats of platform stored before their keys named the bot (no "/" in the key) get
    prefix in front: the first bot to start after the upgrade takes them, with their history
    and settings. Returns how many."""
    async with writer.transaction() as conn:
        result = await conn.execute(
            update(CHATS)
            .where(CHATS.c.platform == platform, CHATS.c.chat_key.not_like("%/%"))
            .values(chat_key=literal(prefix, String) + CHATS.c.chat_key)
        )
    if result.rowcount:
        caches.clear()  # the cached chats go by their old keys
        log.warning(
            "%s: %d chats stored before chat keys named the bot are now bot %s's",
            platform, result.rowcount, prefix.rstrip("/"),
        )  # fmt: skip
    return int(result.rowcount)
