"""A child process for the kill tests: runs one multi-step store write and kills itself
(SIGKILL, as the kernel's OOM killer or `kill -9` would) right after its Nth SQL statement,
before what follows it: what a crash at that point leaves in the database.

    python -m tests.kill_between URL OPERATION N

OPERATION: "recover" (a start's recovery of dead processes' replies, then taking its lease),
"update" (a plugin's atomic update of an existing key and of a new one), "mark" (an adapter
marking the cut replies waiting for it; the kill comes right after the platform edit),
"upgrade" (the pending migrations), "image_turn" (a turn written ahead with two pictures,
one of them already stored, in chat "t"/"img"), "image_reset" (that chat's /reset). Exits 0
if the operation ended before its Nth statement.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from sqlalchemy import event

from botkit.adapters.cut_marks import CutReplyMarker
from botkit.backends.base import Role
from botkit.core.events import ChatKey
from botkit.images.spec import Image
from botkit.store.cut_marks import CutReply
from botkit.store.db import create_engine, upgrade
from botkit.store.leases import Lease
from botkit.store.models import MessageStatus
from botkit.store.plugin_data import Quota
from botkit.store.repository import NewMessage, Repository

# The recovering process's bound: the tests' live leases are never that old, their dead ones
# are older.
STALE_AFTER = 3600.0


def picture(n: int) -> Image:
    """A stand-in picture (the store never decodes what it keeps)."""
    data = bytes([n]) * 100
    return Image(f"{n:064x}", "image/png", 10, 10, data)


async def _run(url: str, operation: str, kill_at: int) -> None:
    engine = create_engine(url)
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1
        if statements == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    repo = Repository(engine)
    if operation == "mark":

        async def edit(_: CutReply, _text: str) -> None:  # the platform edit happened: die now
            if kill_at == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        marker = CutReplyMarker(
            repo.cut_marks, "t", "", edit, max_length=4096, gives_up=(), interval=1.0
        )
        await marker.mark_waiting()
        return
    event.listen(engine.sync_engine, "after_cursor_execute", count)
    if operation == "recover":
        await Lease.acquire(repo, None, interval=1.0, stale_after=STALE_AFTER)
    elif operation == "upgrade":
        await upgrade(engine)
    elif operation == "image_turn":
        chat = await repo.chat(ChatKey("t", "img"))
        question = NewMessage(Role.USER, "ann", "what is this?", 4, "t", MessageStatus.COMPLETE)
        await repo.begin_turn(chat.id, question, images=[picture(1), picture(2)])
    elif operation == "image_reset":
        await repo.clear_history((await repo.chat(ChatKey("t", "img"))).id)
    elif operation == "update":
        quota = Quota(rows=10, bytes=1000)
        await repo.plugin_data.update("dice", 1, "rolls", lambda n: n + 1, quota)
        await repo.plugin_data.update("dice", 1, "new", lambda _: "first", quota)
    else:
        raise SystemExit(f"unknown operation {operation!r}")
    await repo.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_run(sys.argv[1], sys.argv[2], int(sys.argv[3])))
