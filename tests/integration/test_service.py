"""botkit run as systemd runs it: a real process, a notify socket, signals, the database after."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.emulators.telegram import BotApiEmulator, SentMessage


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
    extra: str = "",
    database: str | None = None,
    name: str = "config.toml",
    service: str = "",
) -> asyncio.subprocess.Process:
    """botkit run on Telegram (emulated); extra is appended to the [telegram] section, service
    to [service]. The database is tmp_path/bot.db unless its URL is given."""
    config = tmp_path / name
    url = database or f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    config.write_text(
        f'[telegram]\nenabled = true\napi_base_url = "{emulator.base_url}"\npoll_timeout = 1\n'
        f"{extra}\n"
        f'[storage]\nurl = "{url}"\ncheckpoint_interval = 0.1\n'
        f"[service]\ngrace_period = {grace}\n{service}\n[console]\nenabled = false\n",
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


@asynccontextmanager
async def killed_after(process: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Whatever happens in the block, the process is gone after it (kill -9 if need be)."""
    try:
        yield
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


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
    async with killed_after(process):
        await notify.expect("READY=1")
        await emulator.user_message("/maxtokens 8")
        for i in range(12):
            await emulator.user_message(f"Say a number: {i}", chat_id=3000 + i, user_id=3000 + i)
        async with asyncio.timeout(60):  # some replies are done, others are not
            await emulator.wait_for(lambda: len({m.chat_id for m in emulator.messages}) >= 4)
    database = tmp_path / "bot.db"
    assert integrity(database) == "ok"
    with sqlite3.connect(database) as db:
        turns = db.execute(
            "SELECT chat_id, count(*) FROM messages GROUP BY chat_id HAVING count(*) % 2 = 1"
        ).fetchall()
    assert turns == []  # every stored turn is whole: question and answer together


async def test_kill_9_mid_reply_keeps_the_partial_reply_and_marks_it_after_restart(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket
) -> None:
    ollama = OllamaEmulator(hold_after=3)  # two chunks shown, then the daemon hangs
    await ollama.start()
    backend = (
        f'dm_edit_interval = 0.0\n[backends.big]\nkind = "ollama"\nhost = "{ollama.url}"\n'
        'model = "smollm2:135m"\n[defaults]\nbackend = "big"\nseed = 7\n'
    )
    database = tmp_path / "bot.db"
    try:
        process = await start_service(tmp_path, emulator, notify, 5.0, extra=backend)
        async with killed_after(process):  # kill -9 mid-reply
            await notify.expect("READY=1")
            story = await emulator.user_message("Tell me a story about a fox.")
            async with asyncio.timeout(60):
                await ollama.holding.wait()
                # An edit is made only after the checkpoint of the message it edits.
                await emulator.wait_for(lambda: any(m.edits for m in emulator.sent_to(1001)))
            assert emulator.delivered(story)  # confirmed to Telegram once it was committed
            shown = emulator.sent_to(1001)[0]
        assert integrity(database) == "ok"
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT role, content, status, reply_ref FROM messages").fetchall()
        (user, reply) = rows
        assert user[:3] == ("user", "Tell me a story about a fox.", "complete")
        assert reply[::2] == ("assistant", "generating")
        partial = reply[1]
        assert partial.strip()
        assert shown.text.startswith(partial.strip())
        assert reply[3] == str(shown.message_id)

        ollama.hold_after = None
        process = await start_service(tmp_path, emulator, notify, 5.0, extra=backend)
        async with killed_after(process):
            async with asyncio.timeout(60):
                # The cut message is edited to say so, before anything else is answered.
                await emulator.wait_for(lambda: shown.text.endswith("[interrupted]"))
            assert shown.text == partial.strip() + " [interrupted]"
            await emulator.user_message("Go on.")
            async with asyncio.timeout(60):
                await emulator.wait_for(lambda: len(ollama.records) == 2)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                assert await process.wait() == 0
        assert ollama.records[1].body["messages"][1:] == [
            {"role": "user", "content": "Tell me a story about a fox."},
            {"role": "assistant", "content": partial},
            {"role": "user", "content": "Go on."},
        ]
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT role, status FROM messages ORDER BY id").fetchall()
        assert rows[:3] == [
            ("user", "complete"),
            ("assistant", "interrupted"),
            ("user", "complete"),
        ]
    finally:
        await ollama.stop()


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


async def test_an_adapter_that_fails_stops_the_service_with_status_1(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket
) -> None:
    emulator.fail_next["setMyCommands"].append((500, "Internal Server Error", None))
    process = await start_service(tmp_path, emulator, notify, 1.0)
    async with killed_after(process), asyncio.timeout(60):
        code = await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert code == 1, stderr  # Restart=on-failure: systemd starts it again
    assert "an adapter failed" in stderr
    assert "telegram" in stderr


# Heartbeats for the recovery tests: a process silent for 1 s is gone (the default: 15 s).
QUICK = "heartbeat_interval = 0.2\nheartbeat_timeout = 1.0"


def held_ollama(ollama: OllamaEmulator) -> str:
    """The [telegram] lines and an Ollama backend whose daemon hangs mid-reply."""
    return (
        f'dm_edit_interval = 0.0\n[backends.big]\nkind = "ollama"\nhost = "{ollama.url}"\n'
        'model = "smollm2:135m"\n[defaults]\nbackend = "big"\nseed = 7\n'
    )


async def a_reply_cut_midway(
    emulator: BotApiEmulator, ollama: OllamaEmulator, notify: NotifySocket
) -> SentMessage:
    """Once the service is ready: a question whose reply is shown in part, then the daemon
    hangs (the reply stays generating, checkpointed)."""
    await notify.expect("READY=1")
    await emulator.user_message("Tell me a story about a fox.")
    async with asyncio.timeout(60):
        await ollama.holding.wait()
        await emulator.wait_for(lambda: any(m.edits for m in emulator.sent_to(1001)))
    return emulator.sent_to(1001)[0]


def reply_statuses(database: Path) -> list[str]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT status FROM messages WHERE role = 'assistant' ORDER BY id")
        return [status for (status,) in rows]


async def line_in(stream: asyncio.StreamReader | None, text: str) -> str:
    """Read stream until a line containing text; that line."""
    assert stream is not None
    async with asyncio.timeout(60):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the stream ended before a line with {text!r}"
            if text in line:
                return line


async def test_a_process_killed_in_another_folder_is_recovered_by_the_next_start(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket
) -> None:
    """Each release unpacked in its own folder: the default instance names differ, yet the
    killed process's cut reply is marked (it no longer beats), in the database and in
    Telegram."""
    ollama = OllamaEmulator(hold_after=3)
    await ollama.start()
    database = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    releases = [tmp_path / "release-1", tmp_path / "release-2"]
    for folder in releases:
        folder.mkdir()
    second_notify = NotifySocket(tmp_path / "notify-2.sock")
    try:
        extra = held_ollama(ollama)
        first = await start_service(
            releases[0], emulator, notify, 5.0, extra=extra, database=database, service=QUICK
        )
        async with killed_after(first):  # kill -9 mid-reply
            shown = await a_reply_cut_midway(emulator, ollama, notify)
        assert reply_statuses(tmp_path / "bot.db") == ["generating"]
        ollama.hold_after = None
        second = await start_service(
            releases[1], emulator, second_notify, 5.0, extra=extra, database=database,
            service=QUICK,
        )  # fmt: skip
        async with killed_after(second):
            async with asyncio.timeout(60):
                await emulator.wait_for(lambda: shown.text.endswith("[interrupted]"))
            assert reply_statuses(tmp_path / "bot.db") == ["interrupted"]
            second.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                assert await second.wait() == 0
    finally:
        second_notify.sock.close()
        await ollama.stop()


async def test_a_second_process_with_a_live_ones_name_is_refused_and_touches_nothing(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket
) -> None:
    ollama = OllamaEmulator(hold_after=3)
    await ollama.start()
    database = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    other = tmp_path / "elsewhere"
    other.mkdir()
    named = 'instance = "bot-a"\nheartbeat_interval = 0.2\nheartbeat_timeout = 5.0'
    try:
        extra = held_ollama(ollama)
        first = await start_service(
            tmp_path, emulator, notify, 0.0, extra=extra, database=database, service=named
        )
        async with killed_after(first):
            shown = await a_reply_cut_midway(emulator, ollama, notify)
            second_notify = NotifySocket(other / "notify.sock")
            second = await start_service(
                other, emulator, second_notify, 0.0, extra=extra, database=database,
                service=named,
            )  # fmt: skip
            async with killed_after(second), asyncio.timeout(60):
                code = await second.wait()
            second_notify.sock.close()
            stderr = (await second.stderr.read()).decode() if second.stderr else ""
            assert code == 2, stderr  # a configuration error: systemd does not restart it
            assert "botkit: [service] instance 'bot-a' is already running: instance 'bot-a'" in (
                stderr
            )
            assert "set a different [service] instance in this config" in stderr
            # The live process's reply was not touched, and it goes on serving.
            assert reply_statuses(tmp_path / "bot.db") == ["generating"]
            assert not shown.text.endswith("[interrupted]")
            await emulator.user_message("/temp", chat_id=2002, user_id=2002)
            async with asyncio.timeout(60):
                await emulator.wait_for(lambda: bool(emulator.sent_to(2002)))
            assert emulator.sent_to(2002)[0].text == "temperature is 0.7 (default 0.7)"
    finally:
        await ollama.stop()


async def test_a_process_whose_heartbeat_stopped_is_recovered_by_a_live_one(
    tmp_path: Path, emulator: BotApiEmulator, notify: NotifySocket
) -> None:
    """A process frozen (SIGSTOP: alive, silent) mid-reply: another process, of another bot,
    marks its reply interrupted while running. The frozen one, thawed, finds its lease taken
    and exits 1 (systemd restarts it); its next start marks the message in Telegram."""
    ollama = OllamaEmulator(hold_after=3)
    await ollama.start()
    poet = BotApiEmulator(token="654321:OTHER-token-not-real-9876543210")
    await poet.start()
    database = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    other = tmp_path / "poet"
    other.mkdir()
    poet_notify = NotifySocket(other / "notify.sock")
    try:
        extra = held_ollama(ollama)
        first = await start_service(
            tmp_path, emulator, notify, 1.0, extra=extra, database=database, service=QUICK
        )
        async with killed_after(first):
            shown = await a_reply_cut_midway(emulator, ollama, notify)
            second = await start_service(
                other, poet, poet_notify, 5.0, database=database, service=QUICK
            )
            async with killed_after(second):
                await poet_notify.expect("READY=1")
                first.send_signal(signal.SIGSTOP)
                line = await line_in(second.stderr, "cut (its process stopped")
                assert line.startswith("WARNING botkit.store.leases: 1 reply was cut")
                assert reply_statuses(tmp_path / "bot.db") == ["interrupted"]
                assert not shown.text.endswith("[interrupted]")  # only its own bot can edit it
                first.send_signal(signal.SIGCONT)
                async with asyncio.timeout(60):
                    assert await first.wait() == 1
                stderr = (await first.stderr.read()).decode() if first.stderr else ""
                assert "botkit: this process's heartbeat stopped for over 1 s" in stderr
                ollama.hold_after = None
                again = await start_service(
                    tmp_path, emulator, notify, 5.0, extra=extra, database=database,
                    service=QUICK,
                )  # fmt: skip
                async with killed_after(again), asyncio.timeout(60):
                    await emulator.wait_for(lambda: shown.text.endswith("[interrupted]"))
                assert reply_statuses(tmp_path / "bot.db") == ["interrupted"]
    finally:
        poet_notify.sock.close()
        await poet.stop()
        await ollama.stop()
