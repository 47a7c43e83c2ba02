"""The OpenAI-compatible backend: against a real server (llama_cpp.server on the bundled model)
for the normal path, and against a small emulator for failures on demand."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from botkit.backends.base import Message
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.events import ChatKey
from botkit.store.models import MessageStatus
from tests.conftest import MakeConfig, say
from tests.emulators.openai import OpenAIEmulator
from tests.openai_server import RealServer, llama_cpp_server

KEY_ENV = "BOTKIT_TEST_OPENAI_KEY"


@pytest.fixture(scope="module")
def server() -> Iterator[RealServer]:
    with llama_cpp_server() as running:
        yield running


def openai_section(base_url: str, model: str = "smollm2", **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": base_url, "model": model, "api_key_env": KEY_ENV,
            **extra}  # fmt: skip


@pytest.fixture
async def both(
    make_config: MakeConfig, server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bot]:
    """A bot with the in-process model (local) and the same model behind the server."""
    monkeypatch.setenv(KEY_ENV, server.api_key)
    config = make_config(
        backends={
            "local": {"kind": "llamacpp"},
            "server": openai_section(server.base_url, n_ctx=2048),
        },
        defaults={"backend": "server", "max_tokens": 64},
    )
    async with build_bot(config) as bot:
        yield bot


CONVERSATIONS: list[list[Message]] = [
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Réponds en français, brièvement."},
     {"role": "user", "content": "Hello there!"},
     {"role": "assistant", "content": "Bonjour ! Comment puis-je vous aider ?"},
     {"role": "user", "content": "Count to five: 1, 2, 3…\n\nThen stop."}],
]  # fmt: skip


async def test_token_counts_are_exact_and_match_the_in_process_model(both: Bot) -> None:
    server, local = both.backends["server"], both.backends["local"]
    assert server.tokenizer_id.startswith("server:")  # the server's own tokenizer, found
    for messages in CONVERSATIONS:
        assert await server.count_tokens(messages) == await local.count_tokens(messages)
        for message in messages:
            assert await server.message_tokens(message) == await local.message_tokens(message)


async def test_a_chat_is_answered_and_switches_between_local_and_server(both: Bot) -> None:
    reply = await say(both, "Hello! Who are you?")
    assert reply.text
    assert not reply.text.startswith("⚠")
    described = (await say(both, "/model")).text
    assert "backend: server (openai)" in described
    assert "token counts: exact (POST /extras/tokenize)" in described
    assert "context length: 2048 tokens" in described
    assert "this chat now uses backend local" in (await say(both, "/model local")).text
    assert "backend: local (llama.cpp)" in (await say(both, "/model")).text
    assert (await say(both, "And what can you do?")).text
    assert "now uses backend server" in (await say(both, "/model server")).text
    assert (await say(both, "Thanks!")).text
    rows = await both.repo.window((await both.repo.chat(_key("a"))).id, 0)
    assert [r.role for r in rows] == ["user", "assistant"] * 3
    assert all(r.status == MessageStatus.COMPLETE and r.content for r in rows)


def _key(chat: str) -> ChatKey:
    return ChatKey("test", chat)


async def test_sampling_options_reach_the_server(both: Bot) -> None:
    # top_k = 1 keeps only the likeliest token: even at temperature 1.5 the reply is greedy.
    # top_k is not in the OpenAI API, so this shows the extension fields arrive.
    for command in ("/temp 0", "/maxtokens 40"):
        await say(both, command, "greedy")
    for command in ("/temp 1.5", "/topk 1", "/maxtokens 40", "/seed 3"):
        await say(both, command, "topk")
    question = "Describe the sea in one sentence."
    greedy = (await say(both, question, "greedy")).text
    assert (await say(both, question, "topk")).text == greedy
    # max_tokens: the reply stops at 5 tokens, and the stored count says so.
    await say(both, "/maxtokens 5", "short")
    await say(both, "Tell me a long story about a dragon.", "short")
    rows = await both.repo.window((await both.repo.chat(_key("short"))).id, 0)
    assert rows[-1].token_count <= 5 + 8  # the reply's text plus its template framing


async def test_a_seed_repeats_a_reply_and_another_seed_does_not(both: Bot) -> None:
    texts = {}
    for chat, seed in (("a", 11), ("b", 11), ("c", 12)):
        await say(both, "/temp 1.2", chat)
        await say(both, f"/seed {seed}", chat)
        texts[chat] = (
            await say(both, "Invent a name for a new planet and describe it.", chat)
        ).text
    assert texts["a"] == texts["b"]
    assert texts["a"] != texts["c"]


async def test_a_long_chat_is_trimmed_with_exact_counts(
    make_config: MakeConfig, server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, server.api_key)
    config = make_config(
        backends={
            "local": {"kind": "llamacpp"},
            "server": openai_section(server.base_url, n_ctx=512),
        },
        defaults={"backend": "server", "max_tokens": 48, "temperature": 0.0},
    )
    async with build_bot(config) as bot:
        local = bot.backends["local"]
        for turn in range(10):
            assert (await say(bot, f"Turn {turn}: tell me a fact about the number {turn}.")).text
            chat = await bot.repo.chat(_key("a"))
            rows = await bot.conversation.planner.history(chat, bot.backends["server"])
            plan = await bot.conversation.planner.plan(chat, bot.settings_for(chat), rows, None)
            # Counted by the in-process tokenizer, the next prompt fits with the reply reserve.
            assert await local.count_tokens(plan.messages) + 48 <= 512
        report = (await say(bot, "/context")).text
        assert "Context window: 512 tokens" in report
        assert int(report.rsplit(":", 1)[1]) > 0  # old messages were dropped


async def test_a_wrong_key_is_named_without_showing_it(
    make_config: MakeConfig, server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong-key-abcdef")
    config = make_config(backends={"local": openai_section(server.base_url)})
    async with build_bot(config) as bot:
        reply = (await say(bot, "Hello")).text
    assert "refused the API key (401)" in reply
    assert KEY_ENV in reply
    assert "wrong-key-abcdef" not in reply


async def test_an_unknown_model_lists_the_served_ones(
    make_config: MakeConfig, server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, server.api_key)
    config = make_config(backends={"local": openai_section(server.base_url, model="llama-9b")})
    async with build_bot(config) as bot:
        reply = (await say(bot, "Hello")).text
    assert "model 'llama-9b' is not served" in reply
    assert "it serves: smollm2" in reply


def test_check_probes_the_server(tmp_path: Path, server: RealServer) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n'
        f'[backends.local]\nkind = "openai"\nbase_url = "{server.base_url}"\n'
        f'model = "smollm2"\napi_key_env = "{KEY_ENV}"\nn_ctx = 1024\n',
        encoding="utf-8",
    )
    env = {**_environment(), KEY_ENV: server.api_key}
    subprocess.run([sys.executable, "-m", "botkit", "db", "upgrade", "--config", str(config)],
                   env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "botkit", "check", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "backend local: openai model smollm2 present, 1024-token window" in result.stdout
    assert "token counts: exact" in result.stdout
    assert server.api_key not in result.stdout + result.stderr


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != KEY_ENV}


@pytest.fixture(scope="module")
def small_server() -> Iterator[RealServer]:
    with llama_cpp_server(n_ctx=512) as running:
        yield running


async def test_a_window_the_server_does_not_report_is_learnt_from_its_refusal(
    make_config: MakeConfig, small_server: RealServer, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # llama_cpp.server reports no context length, and n_ctx is not set: 4096 is assumed. A
    # prompt over its 512 tokens gets an empty stream; asked again unstreamed, it names 512.
    monkeypatch.setenv(KEY_ENV, small_server.api_key)
    config = make_config(backends={"local": openai_section(small_server.base_url)},
                         defaults={"max_tokens": 16, "temperature": 0.0})  # fmt: skip
    async with build_bot(config) as bot:
        assert "window: 4096 tokens (assumed" in (await say(bot, "/model")).text
        for turn in range(4):  # about 160 tokens each: the third prompt passes 512
            reply = await say(bot, f"Turn {turn}: " + "apple banana cherry " * 50)
            assert reply.text
            assert not reply.text.startswith("⚠"), reply.text
        described = (await say(bot, "/model")).text
        rows = await bot.repo.window((await bot.repo.chat(_key("a"))).id, 0)
    assert "context length: 512 tokens" in described
    assert "window: 512 tokens (learned from the server's error)" in described
    assert caplog.text.count("named its context length, 512 tokens") == 1
    assert all(r.status == MessageStatus.COMPLETE for r in rows)


# --- failures on demand (the emulator) ---------------------------------------------------------


@pytest.fixture
async def emulator() -> AsyncIterator[OpenAIEmulator]:
    instance = OpenAIEmulator(api_key="emulated-key")
    await instance.start()
    yield instance
    await instance.stop()


@asynccontextmanager
async def emulated_bot(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    **extra: Any,
) -> AsyncIterator[Bot]:  # fmt: skip
    monkeypatch.setenv(KEY_ENV, "emulated-key")
    config = make_config(
        backends={"local": {"kind": "llamacpp"},
                  "remote": openai_section(emulator.base_url, **{"n_ctx": 4096, **extra})},
        defaults={"backend": "remote", "max_tokens": 32},
    )  # fmt: skip
    async with build_bot(config) as bot:
        yield bot


async def test_a_server_without_tokenize_gets_estimates_and_the_standard_fields(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        commands = ("/temp 0.3", "/topk 5", "/topp 0.5", "/minp 0.1", "/seed 42",
                    "/repeatpenalty 1.2", "/presencepenalty 0.5",
                    "/frequencypenalty -0.25")  # fmt: skip
        for command in commands:
            assert "set to" in (await say(bot, command)).text
        assert (await say(bot, "one two three")).text == "one two three"
        body = emulator.records[-1]
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (
            0.3, 0.5, 42, 32)  # fmt: skip
        assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -0.25)
        # Not in the OpenAI API: under llama.cpp's and vLLM's names.
        assert (body["top_k"], body["min_p"], body["repeat_penalty"]) == (5, 0.1, 1.2)
        assert body["repetition_penalty"] == 1.2
        assert bot.backends["remote"].tokenizer_id.startswith("estimate:")
        assert "token counts: estimated" in (await say(bot, "/model")).text


async def test_without_extensions_settings_say_what_is_ignored(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulated_bot(make_config, emulator, monkeypatch, sampling_extensions=False) as bot:
        await say(bot, "hello")
        assert not {"top_k", "min_p", "repeat_penalty"} & set(emulator.records[-1])
        settings = (await say(bot, "/settings")).text.splitlines()
        ignored = {line.split(":")[0].strip(" *") for line in settings if "ignored by" in line}
        assert ignored == {"top_k", "min_p", "repeat_penalty"}


async def test_a_server_that_refuses_the_extensions_answers_without_them(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    emulator.accepted = frozenset()  # as api.openai.com: 400 for top_k
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        assert "set to" in (await say(bot, "/topk 5")).text
        assert (await say(bot, "one two three")).text == "one two three"
        assert len(emulator.records) == 1  # the refused request was not answered
        assert not {"top_k", "min_p", "repeat_penalty", "repetition_penalty"} & set(
            emulator.records[0]
        )
        assert "Unrecognized request argument supplied: top_k" in caplog.text
        settings = (await say(bot, "/settings")).text.splitlines()
        ignored = {line.split(":")[0].strip(" *") for line in settings if "ignored by" in line}
        assert ignored == {"top_k", "min_p", "repeat_penalty"}
        assert (await say(bot, "four five")).text == "four five"  # not refused again
        assert len(emulator.records) == 2


async def test_a_server_without_stream_options_answers_and_counts_usage(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.unknown = frozenset({"stream_options"})
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        assert (await say(bot, "one two three")).text == "one two three"
        assert "stream_options" not in emulator.records[-1]
        # No usage in the stream: counted with the estimate (this server cannot tokenize).
        stats = (await say(bot, "/stats")).text
        counted = re.search(r"reply: (\d+) tokens", stats)
        assert counted is not None, stats
        assert int(counted[1]) > 0


async def test_a_refusal_of_the_request_itself_is_told_not_retried(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.unknown = frozenset({"seed"})  # a plain argument: nothing to drop
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        reply = await say(bot, "one two three")
        assert "answered 400: Unrecognized request argument supplied: seed" in reply.text
        assert emulator.records == []


async def test_a_busy_server_is_retried_then_the_chat_is_told(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulated_bot(make_config, emulator, monkeypatch, max_retries=2) as bot:
        emulator.busy = 2  # two 429s, then an answer: the client's retries absorb them
        assert (await say(bot, "still here")).text == "still here"
        assert len(emulator.records) == 3
        emulator.busy, emulator.busy_status = 3, 503  # more than the retries
        reply = (await say(bot, "anyone?")).text
        assert "is busy (503, still after 2 retries); try again in a moment" in reply
        # The question is kept; its reply is marked interrupted, with no text.
        rows = await bot.repo.window((await bot.repo.chat(_key("a"))).id, 0)
        assert [(r.role, r.content, r.status) for r in rows[2:]] == [
            ("user", "anyone?", MessageStatus.COMPLETE),
            ("assistant", "", MessageStatus.INTERRUPTED),
        ]


async def test_a_broken_stream_keeps_the_partial_reply_marked_interrupted(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        emulator.cut_after = 2
        reply = await say(bot, "alpha beta gamma delta")
        assert reply.text.startswith("alpha beta")
        assert "[interrupted]" in reply.text
        rows = await bot.repo.window((await bot.repo.chat(_key("a"))).id, 0)
        assert (rows[-1].content, rows[-1].status) == ("alpha beta", MessageStatus.INTERRUPTED)
        emulator.cut_after = None
        assert (await say(bot, "and again")).text == "and again"  # the bot goes on


async def test_a_stalled_server_times_out_with_a_clear_reply(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulated_bot(
        make_config, emulator, monkeypatch, read_timeout=0.5, max_retries=0
    ) as bot:
        emulator.stall = True
        reply = (await say(bot, "hello?")).text
        assert "did not answer in time (5 s to connect, 0.5 s to read)" in reply


async def test_a_server_that_is_down_gets_a_clear_reply_and_the_bot_goes_on(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulated_bot(make_config, emulator, monkeypatch, max_retries=0) as bot:
        await emulator.stop()  # nothing listens there any more
        reply = (await say(bot, "hello?")).text
        assert "is not reachable: is it running?" in reply
        assert "now uses backend local" in (await say(bot, "/model local")).text
        assert (await say(bot, "Hello")).text  # the in-process model still answers


async def test_a_model_removed_from_the_server_lists_what_it_serves(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.models = ["smollm2", "qwen2.5:7b"]
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        emulator.models = ["qwen2.5:7b"]  # unloaded after botkit started
        reply = (await say(bot, "hello")).text
        assert "model 'smollm2' is not served by" in reply
        assert "it serves: qwen2.5:7b" in reply  # listed again when the model was missing


async def test_the_key_can_come_from_a_systemd_credential(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "openai_api_key").write_text("emulated-key\n", encoding="utf-8")
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = make_config(backends={"local": openai_section(emulator.base_url, n_ctx=4096)},
                         defaults={"max_tokens": 16})  # fmt: skip
    async with build_bot(config) as bot:
        assert (await say(bot, "hello from systemd")).text == "hello from systemd"


@pytest.mark.parametrize(
    ("reports", "shown"),
    [
        ({"max_model_len": 8192}, "context length: 8192 tokens"),  # vLLM
        # llama-server: the loaded context from /props, not the trained one from /v1/models.
        ({"n_ctx_train": 131072, "props_n_ctx": 2048},
         "context length: 2048 tokens (trained for 131072)"),
        ({}, "context length: 4096 tokens"),  # neither: the config's n_ctx
    ],
)  # fmt: skip
async def test_the_window_is_what_the_server_serves(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    reports: dict[str, int], shown: str,
) -> None:  # fmt: skip
    for name, value in reports.items():
        setattr(emulator, name, value)
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        assert shown in (await say(bot, "/model")).text


async def test_stats_show_what_the_server_reports(
    both: Bot, make_config: MakeConfig, emulator: OpenAIEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # llama_cpp.server sends no usage in a stream: counted with its tokenizer, timed here.
    await say(both, "/maxtokens 12")
    await say(both, "Name a fruit.")
    real = (await say(both, "/stats")).text
    assert "backend server" in real
    assert "time to first token" in real
    # The emulator reports usage with OpenAI's prompt caching figure.
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        await say(bot, "one two three four")
        emulated = (await say(bot, "/stats")).text
    body = emulator.records[-1]
    prompt = sum(len(str(m["content"]).split()) + 4 for m in body["messages"])
    assert f"prompt: {prompt} tokens: {prompt // 2} reused from the KV cache" in emulated
    assert "prefill: not reported" in emulated


async def test_a_server_that_ignores_max_tokens_is_cut_a_little_past_it(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    emulator.runaway = 2000  # words, whatever max_tokens (32) says
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        reply = await say(bot, "one two three")
        # Counted by chunks (the emulator sends no usage until the end): 32 + a margin of 8.
        assert 32 < len(reply.text.split()) <= 40
        assert len(reply.messages) == 1
        rows = await bot.repo.window((await bot.repo.chat(_key("a"))).id, 0)
        assert (rows[-1].content, rows[-1].status) == (reply.text, MessageStatus.COMPLETE)
        assert "(it reached max_tokens)" in (await say(bot, "/stats")).text
        assert len((await say(bot, "four five")).text.split()) <= 40
    assert caplog.text.count("streamed past max_tokens (32)") == 1


async def test_a_stream_of_keepalives_alone_times_out(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.keepalive_only = True  # a comment every 0.05 s: the socket never idles 0.5 s
    async with emulated_bot(
        make_config, emulator, monkeypatch, read_timeout=0.5, max_retries=0
    ) as bot:
        async with asyncio.timeout(60):  # without the fix, the keep-alives hold it for ever
            reply = (await say(bot, "hello?")).text
        assert "sent no part of the reply for 0.5 s (read_timeout)" in reply
        rows = await bot.repo.window((await bot.repo.chat(_key("a"))).id, 0)
        assert (rows[-1].content, rows[-1].status) == ("", MessageStatus.INTERRUPTED)


async def test_a_reply_past_its_deadline_is_cut_and_kept_interrupted(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A chunk every 0.05 s: at most 20 in the 1 s allowed, short of max_tokens (32).
    emulator.runaway, emulator.chunk_delay = 10_000, 0.05
    async with emulated_bot(make_config, emulator, monkeypatch, reply_timeout=1) as bot:
        async with asyncio.timeout(60):
            reply = (await say(bot, "tick tock")).text
        assert "did not finish the reply within 1 s (reply_timeout)" in reply
        assert reply.startswith("tick tock")
        assert "[interrupted]" in reply
        rows = await bot.repo.window((await bot.repo.chat(_key("a"))).id, 0)
        assert rows[-1].status == MessageStatus.INTERRUPTED
        assert rows[-1].content.startswith("tick tock")


@pytest.mark.parametrize(
    ("mode", "why"),
    [("405", "answered 405"), ("500", "answered 500"),
     ("garbage", "no list of token ids in the answer"), ("hang", "no answer in time")],
)  # fmt: skip
async def test_a_failing_tokenize_endpoint_means_estimates_probed_once(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, mode: Literal["405", "500", "garbage", "hang"], why: str,
) -> None:  # fmt: skip
    emulator.tokenize = mode
    async with emulated_bot(make_config, emulator, monkeypatch, read_timeout=0.5) as bot:
        assert (await say(bot, "one two three")).text == "one two three"
        assert (await say(bot, "four five")).text == "four five"
        described = (await say(bot, "/model")).text
    assert emulator.tokenize_calls == 1  # probed once, at start
    assert f"estimated (the server's tokenize endpoint failed: POST /extras/tokenize {why})" in (
        described
    )
    assert caplog.text.count("its tokenize endpoint failed") == 1


async def test_a_refusal_that_quotes_the_user_keeps_the_extensions(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.echo_refusal = "top_k"  # the refusal quotes the message; its param names the message
    async with emulated_bot(make_config, emulator, monkeypatch) as bot:
        reply = (await say(bot, "what does top_k do?")).text
        assert "answered 400: Invalid 'messages[1].content': 'what does top_k do?'" in reply
        assert len(emulator.records) == 1  # told, not sent again without the extensions
        emulator.echo_refusal = None
        # The unanswered question and this one go as one user message: the reply echoes both.
        assert (await say(bot, "and min_p?")).text.endswith("top_k do? and min_p?")
        assert {"top_k", "min_p", "repeat_penalty"} <= set(emulator.records[-1])
        assert "ignored by" not in (await say(bot, "/settings")).text


@pytest.mark.parametrize("wording", ["vllm", "llama-server", "llama-cpp-python"])
async def test_a_window_named_in_a_refusal_is_learnt_and_the_turn_planned_again(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, wording: Literal["vllm", "llama-server", "llama-cpp-python"],
) -> None:  # fmt: skip
    # 250 tokens, not reported. In the emulator's count (words + 4 a message) the fourth
    # prompt passes 250; botkit, with no n_ctx, assumes 4096 until the refusal names 250.
    emulator.window, emulator.window_wording = 250, wording
    async with emulated_bot(make_config, emulator, monkeypatch, n_ctx=None, max_retries=0) as bot:
        assert "window: 4096 tokens (assumed" in (await say(bot, "/model")).text
        for turn in range(5):
            words = [f"t{turn}w{i}" for i in range(40)]
            assert (await say(bot, " ".join(words))).text == " ".join(words[:32])
        described = (await say(bot, "/model")).text
        rows = await bot.repo.window((await bot.repo.chat(_key("a"))).id, 0)
    assert "context length: 250 tokens" in described
    assert "window: 250 tokens (learned from the server's error)" in described
    assert caplog.text.count("named its context length, 250 tokens") == 1
    assert all(r.status == MessageStatus.COMPLETE for r in rows)


async def test_chats_refused_together_are_all_planned_again(
    make_config: MakeConfig, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Each chat's fourth prompt passes the 250 tokens, and the three are refused together:
    # one refusal teaches the window; the others' prompts were planned for 4096 all the same.
    chats = ("a", "b", "c")
    emulator.window, emulator.refuse_together = 250, len(chats)
    async with emulated_bot(make_config, emulator, monkeypatch, n_ctx=None, max_retries=0) as bot:

        async def turn(chat: str, n: int) -> None:
            words = [f"{chat}{n}w{i}" for i in range(40)]
            assert (await say(bot, " ".join(words), chat)).text == " ".join(words[:32])

        for n in range(3):
            await asyncio.gather(*(turn(chat, n) for chat in chats))
        await asyncio.gather(*(turn(chat, 3) for chat in chats))
    assert caplog.text.count("named its context length, 250 tokens") == 1
