"""botkit run as systemd runs it: a real process, a notify socket, signals, the database after."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.emulators.telegram import BotApiEmulator


class NotifySocket:
    """The datagram socket systemd would listen on; collects what the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def expect(self, field: str) -> None:
        """Wait until a datagram carrying field arrives."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            while not any(field in m.split("\n") for m in self.messages):
                data = await loop.sock_recv(self.sock, 4096)
                self.messages.append(data.decode())

    def count(self, field: str) -> int:
        return sum(field in m.split("\n") for m in self.messages)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    socket_ = NotifySocket(tmp_path / "notify.sock")
    yield socket_
    socket_.sock.close()


@pytest.fixture
async def emulator() -> AsyncIterator[BotApiEmulator]:
    instance = BotApiEmulator()
    await instance.start()
    yield instance
    await instance.stop()


async def start_service(
    tmp_path: Path,
    emulator: BotApiEmulator,
    notify: NotifySocket,
    grace: float,
    token: str | None = None,
) -> asyncio.subprocess.Process:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n'
        f'[telegram]\nenabled = true\napi_base_url = "{emulator.base_url}"\npoll_timeout = 1\n'
        f"[service]\ngrace_period = {grace}\n[console]\nenabled = false\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "BOTKIT_TELEGRAM_TOKEN": token or emulator.token,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "200000",  # a ping every 0.1 s
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botkit", "run", "--config", str(config),
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def integrity(database: Path) -> str:
    with sqlite3.connect(database) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.parametrize("grace", [30.0, 0.0], ids=["reply-finishes", "reply-cut"])
async def test_sigterm_during_a_reply_stops_cleanly(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket, grace: float
) -> None:
    process = await start_service(tmp_path, emulator, notify, grace)
    try:
        await notify.expect("READY=1")
        assert "getMe" in emulator.calls  # ready only once connected (and the model loaded)
        await notify.expect("WATCHDOG=1")
        pings = notify.count("WATCHDOG=1")
        await emulator.user_message("/maxtokens 200")
        await emulator.user_message("Tell me a long story about a lighthouse.")
        async with asyncio.timeout(60):
            await emulator.wait_for(lambda: len(emulator.sent_to(1001)) >= 2)  # reply streaming
        process.send_signal(signal.SIGTERM)
        await notify.expect("STOPPING=1")
        async with asyncio.timeout(60):
            code = await process.wait()
        assert notify.count("WATCHDOG=1") > pings  # the loop kept pinging while it worked
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert code == 0, stderr
    assert emulator.token not in stderr
    database = tmp_path / "bot.db"
    assert integrity(database) == "ok"
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT role, status FROM messages ORDER BY id").fetchall()
    expected = "complete" if grace else "interrupted"
    assert rows == [("user", "complete"), ("assistant", expected)]


async def test_kill_9_in_a_burst_loses_no_committed_turn(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket
) -> None:
    process = await start_service(tmp_path, emulator, notify, 5.0)
    try:
        await notify.expect("READY=1")
        await emulator.user_message("/maxtokens 8")
        for i in range(12):
            await emulator.user_message(f"Say a number: {i}", chat_id=3000 + i, user_id=3000 + i)
        async with asyncio.timeout(60):  # some replies are done, others are not
            await emulator.wait_for(lambda: len({m.chat_id for m in emulator.messages}) >= 4)
        process.kill()
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    database = tmp_path / "bot.db"
    assert integrity(database) == "ok"
    with sqlite3.connect(database) as db:
        turns = db.execute(
            "SELECT chat_id, count(*) FROM messages GROUP BY chat_id HAVING count(*) % 2 = 1"
        ).fetchall()
    assert turns == []  # every stored turn is whole: question and answer together


async def test_a_refused_token_exits_with_status_2(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket
) -> None:
    wrong = "999:a-different-token-than-the-emulator-has"  # every request: 401
    process = await start_service(tmp_path, emulator, notify, 1.0, token=wrong)
    async with asyncio.timeout(60):
        code = await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert code == 2, stderr  # RestartPreventExitStatus=2 in the unit: no restart loop
    assert "the token was refused" in stderr
    assert wrong not in stderr
