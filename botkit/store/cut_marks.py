"""The replies a crash cut whose platform message does not say so yet (cut_marks).

Recovery (botkit.store.leases) queues them, whichever process recovers them; the adapter of
the chat's bot takes its own, marks each message, then deletes the entry. A process killed
between the two marks that message again at its next start (the same text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Table, delete, select

from botkit.core.events import ChatKey
from botkit.store.models import ChatRow, CutMarkRow

if TYPE_CHECKING:
    from botkit.store.repository import Repository

__all__ = ["CutMarks", "CutReply"]

_CHATS: Table = ChatRow.__table__  # type: ignore[assignment]  # declarative tables are Tables
_CUT_MARKS: Table = CutMarkRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class CutReply:
    """A reply that a crash cut while it was generated (stored as interrupted), still to be
    marked on its platform."""

    id: int
    chat: ChatKey
    content: str
    reply_ref: str


class CutMarks:
    """The queue of cut replies to mark, in the database."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    async def pending(self, platform: str, bot_prefix: str) -> list[CutReply]:
        """The cut replies in platform's chats whose key starts with bot_prefix ("BOT/": the
        chats of one bot, which alone can edit its messages), oldest first."""
        rows = await self._repo.read(
            select(_CUT_MARKS.c.id, _CHATS.c.chat_key, _CUT_MARKS.c.content,
                   _CUT_MARKS.c.reply_ref)
            .join(_CHATS, _CHATS.c.id == _CUT_MARKS.c.chat_id)
            .where(_CHATS.c.platform == platform,
                   _CHATS.c.chat_key.startswith(bot_prefix, autoescape=True))
            .order_by(_CUT_MARKS.c.id)
        )  # fmt: skip
        return [CutReply(i, ChatKey(platform, key), text, ref) for i, key, text, ref in rows]

    async def done(self, mark_id: int) -> None:
        """The reply's message is marked (or cannot be): forget it."""
        async with self._repo.transaction() as conn:
            await conn.execute(delete(_CUT_MARKS).where(_CUT_MARKS.c.id == mark_id))
