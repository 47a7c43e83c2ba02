"""The Ollama backend: the real `ollama` client against the local Ollama API emulator."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ollama import AsyncClient, ResponseError

from botkit.adapters.memory import MemoryTarget
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.store.models import MessageStatus
from tests.conftest import MakeConfig, incoming, say
from tests.emulators.ollama import OllamaEmulator

MODEL = "smollm2:135m"


@pytest.fixture
async def ollama() -> AsyncIterator[OllamaEmulator]:
    emulator = OllamaEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


async def start_bot(
    make_config: MakeConfig, host: str, max_tokens: int = 256, **ollama: Any
) -> Bot:
    config = make_config(
        backends={
            "local": {"kind": "llamacpp"},
            "big": {"kind": "ollama", "host": host, "model": MODEL, **ollama},
        },
        defaults={"backend": "big", "max_tokens": max_tokens},
    )
    bot = build_bot(config)
    await bot.start()
    return bot


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_streams_a_reply_with_the_chats_options(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url, keep_alive="10m")
    try:
        for command in ("/temp 0.3", "/topk 5", "/topp 0.5", "/minp 0.1", "/seed 42",
                        "/maxtokens 40", "/repeatpenalty 1.2", "/presencepenalty 0.5",
                        "/frequencypenalty -0.25"):  # fmt: skip
            assert "set to" in (await say(bot, command)).text
        reply = await say(bot, "Tell me about the moon.")
        assert reply.text
        assert not reply.text.startswith("⚠")
        body = ollama.records[-1].body
        assert body["stream"] is True
        assert body["model"] == MODEL
        assert body["keep_alive"] == "10m"
        assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
        assert body["messages"][-1] == {"role": "user", "content": "Tell me about the moon."}
        assert body["options"] == {
            "temperature": 0.3, "top_k": 5, "top_p": 0.5, "min_p": 0.1, "repeat_penalty": 1.2,
            "presence_penalty": 0.5, "frequency_penalty": -0.25, "seed": 42, "num_predict": 40,
            "num_ctx": 8192,
        }  # fmt: skip
    finally:
        await bot.close()


async def test_same_seed_gives_the_same_text(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url)
    try:
        texts = []
        for chat in ("a", "b"):
            await say(bot, "/seed 7", chat)
            await say(bot, "/temp 1.0", chat)
            texts.append((await say(bot, "Write a line about autumn.", chat)).text)
        assert texts[0] == texts[1]
    finally:
        await bot.close()


async def test_a_long_history_is_trimmed_below_num_ctx(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url, max_tokens=48, num_ctx=512)
    try:
        for turn in range(12):
            await say(bot, f"Turn {turn}: tell me a fact about the number {turn * 7}.")
        assert len(ollama.records) == 12
        for record in ollama.records:
            options = record.body["options"]
            assert options["num_ctx"] == 512
            assert not record.truncated
            assert record.prompt_tokens + options["num_predict"] <= 512
        # The history really outgrew the window, so botkit trimmed it itself.
        assert "no longer seen by the model: 0" not in (await say(bot, "/context")).text
        last = ollama.records[-1].body["messages"]
        assert last[-1]["content"].startswith("Turn 11:")
    finally:
        await bot.close()


async def test_a_daemon_that_is_down_gets_a_clear_reply_and_other_backends_work(
    make_config: MakeConfig,
) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    bot = await start_bot(make_config, host)
    try:
        reply = await say(bot, "Hello?")
        assert reply.text.startswith(f"⚠ Ollama at {host} is not reachable")
        # Anyone but the owner (and group admins) sees no addresses or paths.
        hidden = await say(bot, "Hello?", trusted=False)
        assert hidden.text.startswith("⚠ Ollama at the model server is not reachable")
        shown = (await say(bot, "/model", trusted=False)).text
        assert host not in shown
        assert "Ollama at the model server" in shown
        assert "this chat now uses backend local" in (await say(bot, "/model local")).text
        answer = await say(bot, "Hello again!")
        assert answer.text
        assert not answer.text.startswith("⚠")
    finally:
        await bot.close()


async def test_an_unknown_model_names_the_pull_command(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    config = make_config(
        backends={"big": {"kind": "ollama", "host": ollama.url, "model": "llama9:70b"}},
        defaults={"backend": "big"},
    )
    async with build_bot(config) as bot:
        reply = (await say(bot, "Hi")).text
        assert "model 'llama9:70b' is not on the Ollama server" in reply
        assert "`botkit models pull --ollama llama9:70b`" in reply


async def test_a_stream_cut_midway_keeps_the_partial_reply(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url)
    ollama.cut_after = 3
    try:
        await say(bot, "/maxtokens 100")
        reply = await say(bot, "Tell me a long story.")
        assert reply.messages[0].endswith("[interrupted]")
        assert "the connection to Ollama" in reply.messages[-1]
        chat = await bot.repo.chat(incoming("").chat)
        rows = await bot.repo.window(chat.id, 0)
        assert rows[-1].role == "assistant"
        assert rows[-1].status == MessageStatus.INTERRUPTED
        assert rows[-1].content in reply.messages[0]
        # No figures came for the cut reply: /stats says so rather than show an older one.
        assert "The last reply has no figures" in (await say(bot, "/stats")).text
    finally:
        await bot.close()


async def test_two_chats_generate_in_parallel(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url, parallel=2)
    try:
        targets = [MemoryTarget(), MemoryTarget()]
        await asyncio.gather(
            *(
                bot.router.handle(incoming("Count from 1 to 30.", chat), target)
                for chat, target in zip(("a", "b"), targets, strict=True)
            )
        )
        assert ollama.max_in_flight == 2
        assert all(t.text and not t.text.startswith("⚠") for t in targets)
    finally:
        await bot.close()


async def test_model_shows_the_ollama_details(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url)
    try:
        text = (await say(bot, "/model")).text
        assert "backend: big (ollama)" in text
        assert "parameters: 134.5M" in text
        assert "quantization: Q4_1" in text
        assert "context length: 8192 tokens (trained for 8192)" in text
        assert "family: llama" in text
        assert "parameter size: 135M" in text
        assert "big (ollama: smollm2:135m, Q4_1)  ← this chat" in text
        assert "local (llamacpp: bundled model, Q4_1, 98.4 MB)" in text
        assert "there is no backend named 'nope'" in (await say(bot, "/model nope")).text
    finally:
        await bot.close()


async def test_check_probes_the_ollama_backend(ollama: OllamaEmulator, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "c.db"}"\n'
        f'[backends.big]\nkind = "ollama"\nhost = "{ollama.url}"\nmodel = "{MODEL}"\n'
        '[defaults]\nbackend = "big"\n',
        encoding="utf-8",
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "botkit", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "backend big: ollama model smollm2:135m present, 8192-token window" in result.stdout
    assert "server version: 0.12.11" in result.stdout


async def test_a_daemon_that_never_answers_times_out_with_a_clear_reply(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url, read_timeout=0.5)
    ollama.stall = True
    try:
        reply = (await say(bot, "Hello?")).text
        assert reply == (
            f"⚠ Ollama at {ollama.url} did not answer in time (5 s to connect, 0.5 s to read)"
        )
        # The question is kept, so nothing the user wrote is lost.
        assert "(1 messages)" in (await say(bot, "/context")).text
    finally:
        await bot.close()


async def test_the_emulator_speaks_the_api_the_client_expects(ollama: OllamaEmulator) -> None:
    client = AsyncClient(host=ollama.url)
    listed = await client.list()
    assert [m.model for m in listed.models] == [MODEL]
    assert listed.models[0].modified_at is not None
    response = await client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=False,
        options={"num_predict": 8, "seed": 1},
    )
    assert response.done
    assert response.message.content
    assert response.prompt_eval_count is not None
    assert response.prompt_eval_count > 0
    assert response.eval_count is not None
    assert 0 < response.eval_count <= 8
    with pytest.raises(ResponseError) as missing:
        await client.show("nope:1b")
    assert missing.value.status_code == 404
    await client.close()  # type: ignore[no-untyped-call]


async def test_stats_show_what_ollama_reports(
    make_config: MakeConfig, ollama: OllamaEmulator
) -> None:
    bot = await start_bot(make_config, ollama.url, max_tokens=32)
    try:
        await say(bot, "Tell me about the sea.")
        stats = (await say(bot, "/stats")).text
    finally:
        await bot.close()
    record = ollama.records[-1]
    assert "The last reply (backend big):" in stats
    assert (
        f"prompt: {record.prompt_tokens} tokens (this backend does not say how many were cached)"
        in stats
    )
    prefill = re.search(r"prefill: ([\d.]+) s", stats)
    assert prefill
    assert float(prefill[1]) > 0  # prompt_eval_duration, nanoseconds on the wire
    assert re.search(r"time to first token: [\d.]+ s", stats)
    assert re.search(r"reply: \d+ tokens at [\d.]+ tokens/s", stats)  # eval_count / eval_duration
    assert "KV cache:" not in stats  # Ollama says nothing of its cache
