"""The replies a crash cut whose platform message does not say so yet (cut_marks).

Recovery (botkit.store.leases) queues them, whichever process recovers them; the adapter of
the chat's bot takes its own, marks each message, then deletes the entry. A process killed
between the two marks that message again at its next start (the same text).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from botkit.core.events import ChatKey
from botkit.store.models import CHATS, CUT_MARKS
from botkit.store.writer import Writer

__all__ = ["CutMarks", "CutReply"]


@dataclass(frozen=True, slots=True)
class CutReply:
    """A reply that a crash cut while it was generated (stored as interrupted), still to be
    marked on its platform."""

    id: int
    chat_key: ChatKey
    content: str
    reply_ref: str


class CutMarks:
    """The queue of cut replies to mark, in the database."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def pending(self, platform: str, bot_prefix: str) -> list[CutReply]:
        """The cut replies in platform's chats whose key starts with bot_prefix ("BOT/": the
        chats of one bot, which alone can edit its messages), oldest first."""
        rows = await self._writer.read(
            select(CUT_MARKS.c.id, CHATS.c.chat_key, CUT_MARKS.c.content,
                   CUT_MARKS.c.reply_ref)
            .join(CHATS, CHATS.c.id == CUT_MARKS.c.chat_id)
            .where(CHATS.c.platform == platform,
                   CHATS.c.chat_key.startswith(bot_prefix, autoescape=True))
            .order_by(CUT_MARKS.c.id)
        )  # fmt: skip
        return [CutReply(i, ChatKey(platform, key), text, ref) for i, key, text, ref in rows]

    async def done(self, mark_id: int) -> None:
        """The reply's message is marked (or cannot be): forget it."""
        async with self._writer.transaction() as conn:
            await conn.execute(delete(CUT_MARKS).where(CUT_MARKS.c.id == mark_id))
