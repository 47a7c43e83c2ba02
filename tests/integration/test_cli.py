"""The botkit command as a user runs it: piped chat, restarts, init, migrations."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from botkit.config import load_config
from botkit.store.db import create_engine
from botkit.store.leases import Lease
from botkit.store.models import LeaseRow
from botkit.store.repository import Repository
from tests.conftest import REPO


def botkit(
    *args: str, stdin: str = "", cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botkit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n'
        f'[plugins]\npaths = ["{REPO / "plugins"}"]\nenabled = ["dice"]\n',
        encoding="utf-8",
    )
    return config


def test_piped_chat_answers_each_line_and_restarts_keep_history(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = botkit("chat", "--config", str(config), "--chat", "demo",
                   stdin="/temp 0.2\nHello\n", cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "temperature set to 0.2 (was 0.7)"
    assert len(lines) >= 2
    assert lines[1].strip()
    second = botkit("chat", "--config", str(config), "--chat", "demo",
                    stdin="/temp\n/context\n", cwd=tmp_path)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "temperature is 0.2 (default 0.7)" in second.stdout
    assert "(2 messages)" in second.stdout
    other = botkit(
        "chat", "--config", str(config), "--chat", "other", stdin="/temp\n", cwd=tmp_path
    )
    assert "temperature is 0.7" in other.stdout


def test_init_writes_the_documented_example(tmp_path: Path) -> None:
    result = botkit("init", cwd=tmp_path)
    assert result.returncode == 0
    written = (tmp_path / "config.toml").read_text(encoding="utf-8")
    assert written == (REPO / "config.example.toml").read_text(encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    assert config.backends["local"].window_hint == 2048
    assert botkit("init", cwd=tmp_path).returncode == 1  # never overwrites silently


def test_an_unmigrated_database_stops_with_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with sqlite3.connect(tmp_path / "bot.db") as db:
        db.execute("CREATE TABLE unrelated (x INTEGER)")
    result = botkit("chat", "--config", str(config), stdin="Hello\n", cwd=tmp_path)
    assert result.returncode == 2
    assert "botkit db upgrade" in result.stderr
    upgraded = botkit("db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    again = botkit("chat", "--config", str(config), stdin="/temp\n", cwd=tmp_path)
    assert again.returncode == 0
    assert "temperature is 0.7" in again.stdout


def test_invalid_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[defaults]\ntemperature = 7\n", encoding="utf-8")
    result = botkit("chat", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "defaults.temperature" in result.stderr
    assert "less than or equal to 2" in result.stderr


def test_check_reports_storage_and_backend(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = botkit("check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1  # the database was never created
    assert "botkit db upgrade" in result.stderr
    assert "backend local:" in result.stdout
    botkit("db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert botkit("check", "--config", str(config), cwd=tmp_path).returncode == 0


def test_check_validates_platform_tokens_without_printing_them(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8") + "[telegram]\nenabled = true\n"
        "[discord]\nenabled = true\n",
        encoding="utf-8",
    )
    botkit("db", "upgrade", "--config", str(config), cwd=tmp_path)
    env = {**os.environ, "BOTKIT_TELEGRAM_TOKEN": "12345678:" + "A" * 35}
    env.pop("BOTKIT_DISCORD_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "botkit", "check", "--config", str(config)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "telegram: token present and well-formed OK" in result.stdout
    assert "discord: no token in $BOTKIT_DISCORD_TOKEN" in result.stderr
    assert "A" * 35 not in result.stdout + result.stderr
    env["BOTKIT_DISCORD_TOKEN"] = "not a token"
    result = subprocess.run(
        [sys.executable, "-m", "botkit", "check", "--config", str(config)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert "discord: the token does not look like a discord bot token" in result.stderr


def test_run_without_a_token_says_where_to_put_it(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8") + "[telegram]\nenabled = true\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != "BOTKIT_TELEGRAM_TOKEN"}
    env.pop("CREDENTIALS_DIRECTORY", None)
    result = subprocess.run(
        [sys.executable, "-m", "botkit", "run", "--config", str(config)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        "[telegram] is enabled but no token was found: set $BOTKIT_TELEGRAM_TOKEN" in result.stderr
    )


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (None, "no webhook secret token (1-256 characters A-Z a-z 0-9 _ -) was found"),
        ("has spaces and a dot.", "Telegram accepts 1-256 characters of A-Z a-z 0-9 _ - only"),
        ("x" * 257, "the webhook secret token has 257 characters"),
    ],
    ids=["missing", "bad-characters", "too-long"],
)
def test_webhook_mode_refuses_a_missing_or_invalid_secret(
    tmp_path: Path, secret: str | None, problem: str
) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8")
        + '[telegram]\nenabled = true\nmode = "webhook"\nwebhook_url = "https://example.org/tg"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "BOTKIT_TELEGRAM_TOKEN": "123:not-a-real-token"}
    env.pop("BOTKIT_TELEGRAM_WEBHOOK_SECRET", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    if secret is not None:
        env["BOTKIT_TELEGRAM_WEBHOOK_SECRET"] = secret
    result = subprocess.run(
        [sys.executable, "-m", "botkit", "run", "--config", str(config)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert problem in result.stderr
    if secret is not None:
        assert secret not in result.stderr


def test_piped_chat_refuses_huge_and_undecodable_lines_and_goes_on(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    lines = b"x" * 70_000 + b"\n" + b"caf\xe9 au lait\n" + b"y" * 2_000_000 + b"\n/temp\n"
    result = subprocess.run(
        [sys.executable, "-m", "botkit", "chat", "--config", str(config)],
        input=lines, capture_output=True, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout.decode("utf-8")
    assert result.returncode == 0, result.stderr.decode()
    assert "your message is 70,000 characters; the limit is 16,000" in out
    assert "that line is not valid UTF-8 (byte 4); nothing was sent" in out
    assert "longer than 1,048,576 bytes; nothing was sent" in out
    assert "temperature is 0.7" in out
    assert "Traceback" not in result.stderr.decode()


def test_bench_options_go_to_the_benchmarks(tmp_path: Path) -> None:
    result = botkit("bench", "--json", str(tmp_path / "r.json"), "--only", "nope", cwd=tmp_path)
    # python -m bench itself refused the unknown benchmark: --json reached it too.
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr
    assert "unrecognized arguments" not in result.stderr


def test_chat_in_the_terminal_takes_one_slot_and_run_would_batch(tmp_path: Path) -> None:
    """parallel = "auto": `botkit chat` serves one person, so no KV cache for other chats."""
    config = write_config(tmp_path)
    shown = botkit("chat", "--config", str(config), stdin="/model\n", cwd=tmp_path).stdout
    assert "memory: weights" in shown
    assert "batching:" not in shown
    assert load_config(config).backends["local"].parallel == "auto"  # what `run` sizes


def test_piped_chat_is_not_rate_limited(tmp_path: Path) -> None:
    """The console is its owner at their own terminal: 25 piped lines are 25 answers, over
    the per-user limit that platforms get (20 a minute by default)."""
    config = write_config(tmp_path)
    lines = "/maxtokens 1\n" + "".join(f"Say the number {i}.\n" for i in range(25))
    # 25 turns of the bundled model on a busy 2-core machine: a minute or two.
    result = botkit("chat", "--config", str(config), stdin=lines, cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr
    assert "faster than" not in result.stdout
    with sqlite3.connect(tmp_path / "bot.db") as db:
        replies = db.execute(
            "SELECT count(*) FROM messages WHERE role = 'assistant' AND status = 'complete'"
        ).fetchone()[0]
    assert replies == 25


async def test_a_frozen_chat_whose_replies_were_taken_stops(tmp_path: Path) -> None:
    """`botkit chat` frozen (SIGSTOP) long enough for another process to take it as gone: when
    it wakes it writes nothing more under its lost lease and exits 1, saying why."""
    config = write_config(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8")
        + "[service]\nheartbeat_interval = 0.2\nheartbeat_timeout = 1.0\n",
        encoding="utf-8",
    )
    chat = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botkit", "chat", "--config", str(config), cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert chat.stdin is not None
    assert chat.stdout is not None
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    repo = Repository(engine)
    try:
        chat.stdin.write(b"/temp\n")
        await chat.stdin.drain()
        async with asyncio.timeout(120):
            assert (await chat.stdout.readline()).decode() == "temperature is 0.7 (default 0.7)\n"
        chat.send_signal(signal.SIGSTOP)
        async with engine.begin() as conn:  # silent for a minute, as far as the database knows
            await conn.execute(update(LeaseRow).values(heartbeat=LeaseRow.heartbeat - 60))
        lease, _ = await Lease.acquire(repo, None, interval=0.2, stale_after=1.0)
        chat.send_signal(signal.SIGCONT)
        async with asyncio.timeout(60):
            code = await chat.wait()
        stderr = (await chat.stderr.read()).decode() if chat.stderr else ""
        assert code == 1, stderr
        assert "botkit: this process's heartbeat stopped for over 1 s" in stderr
        await lease.release()
    finally:
        if chat.returncode is None:
            chat.kill()
            await chat.wait()
        await repo.close()
        await engine.dispose()
