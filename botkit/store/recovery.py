"""The recovery of the replies that a dead process left generating (its crash cut them).

A reply row carries the lease id of the process writing it (messages.owner). A reply whose
owner holds no live lease (botkit.store.leases says which are live), or no lease at all (a
process that stopped without finishing it, or a botkit from before leases), was cut: it
becomes interrupted, a /retry in progress is dropped (the reply it was replacing stays), and
each reply shown on a platform is queued in cut_marks for its bot's adapter, the only one that
can edit that message (botkit.store.cut_marks). The dead leases go in the same pass.

A pass is a few statements of the caller's transaction: a process killed in the middle of one
leaves nothing half done.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, exists, insert, literal_column, update
from sqlalchemy.ext.asyncio import AsyncConnection

from botkit.store.models import CUT_MARKS, LEASES, MESSAGES, MessageStatus

__all__ = ["GoneLease", "recover"]

# What a pass returns of each cut reply: its id first, to queue them in the order written.
_CUT = (MESSAGES.c.id, MESSAGES.c.chat_id, MESSAGES.c.reply_ref, MESSAGES.c.content)


@dataclass(frozen=True, slots=True)
class GoneLease:
    """A dead process's lease, deleted by a pass."""

    instance: str | None
    host: str
    pid: int
    silent: float  # seconds since its last heartbeat, on the database's clock


async def recover(
    conn: AsyncConnection, now: float, stale_after: float
) -> tuple[int, list[GoneLease]]:
    """Recover the replies whose owner holds no lease renewed in the last stale_after seconds
    (now: the database's clock), and delete the dead leases. Returns how many replies were cut
    and the leases that went."""
    threshold = now - stale_after
    live_owner = exists().where(LEASES.c.id == MESSAGES.c.owner, LEASES.c.heartbeat >= threshold)
    # The status as a constant (not a parameter): then the partial index of the replies in
    # flight serves the query.
    dead = (MESSAGES.c.status == literal_column(f"'{MessageStatus.GENERATING}'")) & ~live_owner
    cut = list(
        await conn.execute(
            update(MESSAGES)
            .where(dead, MESSAGES.c.replaces.is_(None))
            .values(status=MessageStatus.INTERRUPTED)
            .returning(*_CUT)
        )
    )
    # A /retry cut by the crash: the reply it was replacing stays; its message is marked.
    cut += list(
        await conn.execute(
            delete(MESSAGES).where(dead, MESSAGES.c.replaces.is_not(None)).returning(*_CUT)
        )
    )
    marks = [
        {"chat_id": chat_id, "reply_ref": ref, "content": content}
        for _, chat_id, ref, content in sorted(cut)  # RETURNING's order is unspecified
        if ref is not None
    ]
    if marks:
        await conn.execute(insert(CUT_MARKS), marks)
    gone = await conn.execute(
        delete(LEASES)
        .where(LEASES.c.heartbeat < threshold)
        .returning(LEASES.c.instance, LEASES.c.host, LEASES.c.pid, LEASES.c.heartbeat)
    )
    return len(cut), [
        GoneLease(instance, host, pid, now - beat) for instance, host, pid, beat in gone
    ]
