"""The batched llama.cpp engine under injected faults (issue 23), on the real model: an
exception that escapes the loop, a failed decode, a step that never returns; and the systemd
watchdog of a process whose engine has died."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from botkit.backends import kv_state
from botkit.backends.llama_batch import BatchEngine
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.store.models import MessageStatus
from botkit.systemd import Notifier
from tests.conftest import REPO, MakeConfig, incoming, say
from tests.integration.test_service import NotifySocket

GREEDY = {"temperature": 0.0, "max_tokens": 12, "seed": -1}  # no settle jobs
BOUND = 120  # a test that would hang without the fix fails after this many seconds instead


async def make_bot(make_config: MakeConfig, **backend: Any) -> Bot:
    config = make_config(
        backends={"local": {"parallel": 2, "n_batch": 64, **backend}},
        defaults=GREEDY,
        service={"rate_limit_per_minute": 0},
    )
    bot = build_bot(config, base_dir=REPO)
    await bot.start()
    return bot


@pytest.fixture
async def bot(make_config: MakeConfig) -> AsyncIterator[Bot]:
    instance = await make_bot(make_config)
    try:
        yield instance
    finally:
        await instance.close()


def engine_of(bot: Bot) -> BatchEngine:
    backend = bot.backends["local"]
    assert isinstance(backend, LlamaCppBackend)
    assert backend._engine is not None
    return backend._engine


async def statuses(bot: Bot, chat: str) -> list[str]:
    record = await bot.repo.chat(incoming("", chat).chat)
    return [r.status for r in await bot.repo.window(record.id, 0)]


async def test_an_exception_in_the_loop_ends_every_reply_and_refuses_new_ones(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with asyncio.timeout(BOUND):
        await say(bot, "Name a fruit.", "a")
        await say(bot, "Name a colour.", "b")  # both slots now hold a chat

        def out_of_memory(*_args: object) -> bytes:
            raise MemoryError

        # A third chat takes a slot: the leaving chat's state is saved first, and fails.
        monkeypatch.setattr(kv_state, "snapshot_sequence", out_of_memory)
        answer = (await say(bot, "Name an animal.", "c")).text
        assert "the llama.cpp engine stopped after an internal error (MemoryError())" in answer
        assert "restart" in answer
        assert await statuses(bot, "c") == [MessageStatus.COMPLETE, MessageStatus.INTERRUPTED]
        failure = bot.failure()
        assert failure is not None
        assert "backend local" in failure
        # Any chat's next message is refused at once, with the same reason, and stored as cut.
        again = (await say(bot, "Name a tree.", "a")).text
        assert "the llama.cpp engine stopped" in again
        assert (await statuses(bot, "a"))[-1] == MessageStatus.INTERRUPTED


async def test_a_failed_decode_ends_that_reply_and_the_chat_goes_on(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with asyncio.timeout(BOUND):
        await say(bot, "My name is Ana.", "a")
        engine = engine_of(bot)
        real = engine._ctx.decode
        failed = threading.Event()

        def decode_once_fails(batch: Any) -> None:
            if not failed.is_set():
                failed.set()
                raise RuntimeError("llama_decode returned -1")
            real(batch)

        monkeypatch.setattr(engine._ctx, "decode", decode_once_fails)
        cut = (await say(bot, "What is my name?", "a")).text
        assert "llama.cpp failed while generating (llama_decode returned -1)" in cut
        # The slot's record matches its (emptied) sequence: the chat's next turns work.
        for question in ("Tell me my name again.", "And once more?"):
            assert "failed" not in (await say(bot, question, "a")).text
        assert (await statuses(bot, "a"))[-4:] == [
            MessageStatus.COMPLETE, MessageStatus.COMPLETE,
            MessageStatus.COMPLETE, MessageStatus.COMPLETE,
        ]  # fmt: skip
        assert bot.failure() is None


async def test_a_step_that_never_returns_ends_the_reply_after_stall_timeout(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await make_bot(make_config, stall_timeout=1.0)
    release = threading.Event()
    try:
        async with asyncio.timeout(BOUND):
            engine = engine_of(bot)
            real = engine._ctx.decode

            def hangs(batch: Any) -> None:
                release.wait()
                real(batch)

            monkeypatch.setattr(engine._ctx, "decode", hangs)
            answer = (await say(bot, "Hello there.", "a")).text
            assert "llama.cpp produced nothing for 1 s (stall_timeout)" in answer
            assert await statuses(bot, "a") == [
                MessageStatus.COMPLETE, MessageStatus.INTERRUPTED
            ]  # fmt: skip
            release.set()
            monkeypatch.setattr(engine._ctx, "decode", real)
            # The chat goes on (with room for a loaded test machine).
            backend = bot.backends["local"]
            assert isinstance(backend, LlamaCppBackend)
            backend.config = backend.config.model_copy(update={"stall_timeout": 60.0})
            assert "produced nothing" not in (await say(bot, "Hello again.", "a")).text
    finally:
        release.set()
        await bot.close()


async def test_the_watchdog_stops_pinging_once_a_backend_has_failed(tmp_path: Path) -> None:
    sink = NotifySocket(tmp_path / "notify.sock")
    try:
        env = {"NOTIFY_SOCKET": str(sink.path), "WATCHDOG_USEC": "20000"}
        checks = iter([None, None, "backend local: the engine stopped"])
        async with asyncio.timeout(BOUND):
            await Notifier(env).watchdog(lambda: next(checks))  # returns: no more pings
            await sink.expect("STATUS=failed: backend local: the engine stopped")
        assert sink.count("WATCHDOG=1") == 2
    finally:
        sink.sock.close()
