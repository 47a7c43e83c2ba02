"""Continuous batching on the real model: several chats generate at once from one context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from botkit.adapters.memory import MemoryTarget
from botkit.compose import build_bot
from botkit.core.app import Bot
from tests.conftest import REPO, MakeConfig, incoming, say

GREEDY = {"temperature": 0.0, "max_tokens": 40, "seed": 3}
QUESTIONS = ["Name three fruits.", "What is 2+2?", "Say hello in French.", "Name a color."]


@pytest.fixture
async def batched(make_config: MakeConfig) -> AsyncIterator[Bot]:
    config = make_config(
        backends={"local": {"parallel": 4, "n_batch": 32}},
        defaults=GREEDY,
        service={"rate_limit_per_minute": 0},
    )
    async with build_bot(config, base_dir=REPO) as bot:
        yield bot


class FirstText(MemoryTarget):
    """Says when the reply's first text arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def send(self, text: str) -> int:
        if not text.startswith("⏳"):
            self.started.set()
        return await super().send(text)


async def test_chats_answered_together_keep_their_sequences_apart(batched: Bot) -> None:
    # The same question in four chats at once: four identical replies (a sequence that read
    # or wrote another's cache would not match its neighbours).
    same = await asyncio.gather(*(say(batched, QUESTIONS[0], chat=f"same-{i}") for i in range(4)))
    assert len({t.text for t in same}) == 1
    assert same[0].text
    # Different questions at once: different replies, each stored in its own chat.
    mixed = await asyncio.gather(
        *(say(batched, q, chat=f"mixed-{i}") for i, q in enumerate(QUESTIONS))
    )
    assert len({t.text for t in mixed}) == len(QUESTIONS)
    for i, question in enumerate(QUESTIONS):
        chat = await batched.repo.chat(incoming("", f"mixed-{i}").chat)
        rows = await batched.repo.window(chat.id, 0)
        assert [(r.content, r.status) for r in rows] == [
            (question, "complete"), (mixed[i].text, "complete")
        ]  # fmt: skip
    assert batched.scheduler.queued("local") == 0


async def test_a_follow_up_reuses_its_chats_slot(batched: Bot) -> None:
    await say(batched, "My name is Ana.", chat="ana")
    await say(batched, "My name is Bo.", chat="bo")  # another chat in between
    ctx = await batched.router.context(incoming("What is my name?", "ana"), MemoryTarget())
    reply = await batched.conversation.respond(ctx, "What is my name?")
    assert reply.usage is not None
    first_turn = await batched.backends["local"].count_tokens(
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "My name is Ana."}]
    )  # fmt: skip
    # its history was not prefilled
    assert (reply.usage.cached_prompt_tokens or 0) >= first_turn - 1


async def test_a_seeded_reply_is_repeated_by_retry(batched: Bot) -> None:
    for command in ("/seed 11", "/temp 0.9", "/maxtokens 30"):
        await say(batched, command, chat="seeded")
    first = (await say(batched, "Tell me about the sea.", chat="seeded")).text
    retried = await say(batched, "/retry", chat="seeded")
    assert retried.messages[0] == first
    assert "the same seed" in retried.text


async def test_cancelling_one_chat_leaves_the_others_generating(batched: Bot) -> None:
    await say(batched, "/maxtokens 200", chat="stays")
    await say(batched, "/maxtokens 200", chat="goes")
    stays, goes = FirstText(), FirstText()
    keep = asyncio.create_task(
        batched.router.handle(incoming("Write a long story about a fox.", "stays"), stays)
    )
    drop = asyncio.create_task(
        batched.router.handle(incoming("Write a long story about a cat.", "goes"), goes)
    )
    async with asyncio.timeout(60):
        await asyncio.gather(stays.started.wait(), goes.started.wait())
    chat = await batched.repo.chat(incoming("", "goes").chat)
    await batched.conversation.cancel(chat.id)  # as /reset does
    await drop
    await keep
    kept = await batched.repo.window((await batched.repo.chat(incoming("", "stays").chat)).id, 0)
    assert [r.status for r in kept] == ["complete", "complete"]
    assert kept[1].content == stays.text
    gone = await batched.repo.window(chat.id, 0)
    assert gone[-1].status == "interrupted"
    assert len(gone[-1].content) < len(stays.text)
    assert (await say(batched, "Name a color.", chat="after")).text  # the engine goes on


async def test_a_long_prompt_joins_while_another_chat_generates(batched: Bot) -> None:
    await say(batched, "/maxtokens 150", chat="busy")
    busy = FirstText()
    running = asyncio.create_task(
        batched.router.handle(incoming("Write a long story about a robot.", "busy"), busy)
    )
    async with asyncio.timeout(60):
        await busy.started.wait()
    long_question = "Summarize this list: " + ", ".join(f"item {i}" for i in range(120))
    joined = await say(batched, long_question, chat="long")  # many prefill chunks of 32
    await running
    assert joined.text
    assert not joined.text.startswith("⚠")
    assert not busy.text.startswith("⚠")


async def test_model_shows_the_kv_memory_of_every_slot(batched: Bot) -> None:
    text = (await say(batched, "/model")).text
    assert "KV cache 47.2 MB for a full 2048-token window" in text
    assert "batching: 4 chats at once, each with its own window: KV cache 188.7 MB in all" in text


async def test_a_chat_whose_slot_was_taken_gets_its_state_back(make_config: MakeConfig) -> None:
    config = make_config(backends={"local": {"parallel": 2}}, defaults=GREEDY)
    async with build_bot(config, base_dir=REPO) as bot:
        for chat in ("a", "b", "c"):  # three chats, two slots: c takes a's
            await say(bot, f"Hello, I am {chat}. " * 20, chat=chat)
        ctx = await bot.router.context(incoming("And now?", "a"), MemoryTarget())
        reply = await bot.conversation.respond(ctx, "And now?")
        first_prompt = await ctx.backend.count_tokens(
            [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": "Hello, I am a. " * 20}]
        )  # fmt: skip
        assert reply.usage is not None
        # Its first turn came back from the saved sequence (a seeded chat reuses the prompt it
        # evaluated, not its generated tokens); without it only the persona would be reused.
        assert (reply.usage.cached_prompt_tokens or 0) >= first_prompt - 1
        assert reply.usage.state_restored is True
        assert "KV cache: restored from this chat's saved state" in (await say(bot, "/stats")).text
        # The batched path measures its timings like the single one.
        assert reply.usage.prefill_seconds is not None
        assert reply.usage.first_token_seconds is not None
        assert reply.usage.first_token_seconds >= reply.usage.prefill_seconds
        # A chat that keeps its slot reuses what the slot holds, without a restore.
        again = await bot.conversation.respond(ctx, "Thanks.")
        assert again.usage is not None
        assert again.usage.state_restored is False
        assert (again.usage.cached_prompt_tokens or 0) > reply.usage.prompt_tokens - 2


async def test_penalties_see_the_same_window_batched_and_one_at_a_time(
    make_config: MakeConfig,
) -> None:
    # Default penalties (repeat 1.1): both paths penalise the reply's own tokens only, so a
    # greedy reply is the same batched as one at a time (the batched path once also fed the
    # question's last 63 tokens to the penalties, and every reply differed).
    replies: dict[int, list[str]] = {}
    for parallel in (4, 1):
        config = make_config(
            backends={"local": {"parallel": parallel, "n_batch": 32}},
            defaults={"temperature": 0.0, "max_tokens": 40, "seed": -1},
            service={"rate_limit_per_minute": 0},
        )
        async with build_bot(config, base_dir=REPO) as bot:
            assert bot.settings_for(await bot.repo.chat(incoming("").chat)).repeat_penalty > 1
            replies[parallel] = [
                (await say(bot, q, chat=f"p{parallel}-{i}")).text for i, q in enumerate(QUESTIONS)
            ]
    assert replies[4] == replies[1]
