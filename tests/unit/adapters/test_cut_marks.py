"""CutReplyMarker on a repository in memory: it writes the mark, the adapter's edit only puts
it in the message; a refused edit forgets the reply, any other error leaves it waiting."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from botkit.adapters.cut_marks import CutReplyMarker, EditOne
from botkit.core.events import ChatKey
from botkit.core.streaming import INTERRUPTED_MARK
from botkit.store.cut_marks import CutReply
from botkit.store.models import CUT_MARKS
from botkit.store.repository import Repository


class Refused(Exception):
    """The platform refused the edit (a deleted message)."""


async def _cut(repo: Repository, content: str) -> None:
    chat = await repo.chat(ChatKey("t", "BOT/1"))
    async with repo.transaction() as conn:
        await conn.execute(
            insert(CUT_MARKS).values(chat_id=chat.id, reply_ref="17", content=content)
        )


def _marker(repo: Repository, edit: EditOne, max_length: int = 4096) -> CutReplyMarker:
    return CutReplyMarker(
        repo.cut_marks, "t", "BOT/", edit,
        max_length=max_length, gives_up=(Refused,), interval=60.0,
    )  # fmt: skip


async def test_the_marker_writes_the_mark_within_the_message_length(repo: Repository) -> None:
    await _cut(repo, "word " * 100)
    edits: list[tuple[str, str]] = []

    async def edit(cut: CutReply, text: str) -> None:
        edits.append((cut.reply_ref, text))

    assert await _marker(repo, edit, max_length=120).mark_waiting() == 1
    ((ref, text),) = edits
    assert ref == "17"
    assert text.endswith(INTERRUPTED_MARK)
    assert len(text) <= 120
    assert await repo.cut_marks.pending("t", "BOT/") == []


async def test_a_refused_edit_forgets_the_reply(repo: Repository) -> None:
    await _cut(repo, "Once upon a")

    async def edit(_cut: CutReply, _text: str) -> None:
        raise Refused("message deleted")

    assert await _marker(repo, edit).mark_waiting() == 1
    assert await repo.cut_marks.pending("t", "BOT/") == []


async def test_any_other_error_leaves_the_reply_for_the_next_round(repo: Repository) -> None:
    await _cut(repo, "Once upon a")

    async def edit(_cut: CutReply, _text: str) -> None:
        raise ConnectionError("the network is down")

    with pytest.raises(ConnectionError):
        await _marker(repo, edit).mark_waiting()
    assert [c.content for c in await repo.cut_marks.pending("t", "BOT/")] == ["Once upon a"]
