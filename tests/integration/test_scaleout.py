"""Scaling out: two `botkit run` processes on one PostgreSQL, each its own Telegram bot, talked
to by the same users."""

from __future__ import annotations

import asyncio
import itertools
import signal
from pathlib import Path

from sqlalchemy import text

from botkit.store.db import create_engine, upgrade
from tests.conftest import empty_postgres
from tests.emulators.telegram import BotApiEmulator
from tests.integration.test_service import NotifySocket, killed_after, start_service

QUESTIONS = 3
# Two processes on the test machine's cores: each computes with one thread, as the README tells
# anyone running two on one machine (more threads than cores made each turn 20× slower, and
# replies were cut by the shutdown grace period).
SHARE_CORES = "[backends.local]\nn_threads = 1"


async def test_two_processes_on_one_postgresql_lose_and_mix_no_turn(tmp_path: Path) -> None:
    url = await empty_postgres()
    engine = create_engine(url)
    await upgrade(engine)  # `botkit db upgrade`, once, before the processes start
    bots = [BotApiEmulator(), BotApiEmulator(token="654321:OTHER-token-not-real-9876543210")]
    # The same users talk to both bots (a DM's chat id is the user's id, whichever the bot):
    # each bot has its own conversation with each of them.
    chats = [5001, 5002, 5003]
    sockets = [NotifySocket(tmp_path / f"notify-{i}.sock") for i in range(2)]
    processes = []
    updates: list[list[int]] = [[], []]
    try:
        for i, bot in enumerate(bots):
            await bot.start()
            processes.append(
                await start_service(
                    tmp_path,
                    bot,
                    sockets[i],
                    30.0,
                    database=url,
                    name=f"bot-{i}.toml",
                    extra=SHARE_CORES,
                )
            )
        async with killed_after(processes[0]), killed_after(processes[1]):
            for notify in sockets:
                await notify.expect("READY=1")
            for i, bot in enumerate(bots):
                for chat in chats:
                    updates[i].append(
                        await bot.user_message("/maxtokens 8", chat_id=chat, user_id=chat)
                    )
            # Both processes answer at once, every chat several questions in a row.
            for n in range(QUESTIONS):
                for i, bot in enumerate(bots):
                    for chat in chats:
                        question = f"Question {n} to bot {i} in chat {chat}: name a colour."
                        updates[i].append(
                            await bot.user_message(question, chat_id=chat, user_id=chat)
                        )
            # Telegram is told an update is handled only once its turn is stored, so once
            # every update is confirmed, every question is in the database.
            async with asyncio.timeout(120):
                for bot, sent in zip(bots, updates, strict=True):
                    await bot.wait_for(lambda b=bot, u=sent: all(b.delivered(x) for x in u))
            for process, notify in zip(processes, sockets, strict=True):
                process.send_signal(signal.SIGTERM)  # finishes the turns it took, then exits
                await notify.expect("STOPPING=1")
            async with asyncio.timeout(120):
                codes = [await p.wait() for p in processes]
        errors = [(await p.stderr.read()).decode() if p.stderr else "" for p in processes]
        assert codes == [0, 0], errors
        assert not any("another botkit process" in e for e in errors)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT c.chat_key, m.role, m.content, m.status FROM messages m "
                        "JOIN chats c ON c.id = m.chat_id ORDER BY m.id"
                    )
                )
            ).all()
        for (i, bot), chat in itertools.product(enumerate(bots), chats):
            key = f"{bot.bot_id}/{chat}"
            turns = [(r.role, r.content, r.status) for r in rows if r.chat_key == key]
            # In order, whole, each question followed by its own answer, and only this bot's.
            assert [t[0] for t in turns] == ["user", "assistant"] * QUESTIONS
            assert [t[1] for t in turns[::2]] == [
                f"Question {n} to bot {i} in chat {chat}: name a colour." for n in range(QUESTIONS)
            ]
            assert all(t[2] == "complete" for t in turns[1::2]), (turns, errors)
    finally:
        for bot in bots:
            await bot.stop()
        for notify in sockets:
            notify.sock.close()
        await engine.dispose()
