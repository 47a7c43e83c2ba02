"""Conversations on the real model: trimming, seeds, state reuse, interruption, the event loop."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

from botkit.adapters.memory import MemoryTarget
from botkit.backends.base import BackendUnavailable, Chunk, GenerationParams, Message
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.compose import build_bot
from botkit.config import LlamaCppConfig
from botkit.core.app import Bot
from botkit.core.conversation import Reply
from botkit.store.models import MessageStatus
from botkit.tools.spec import ToolChoice, ToolSpec
from tests.conftest import REPO, MakeConfig, incoming, say


async def respond(bot: Bot, text: str, chat: str = "a") -> tuple[Reply, MemoryTarget]:
    target = MemoryTarget()
    ctx = await bot.router.context(incoming(text, chat), target)
    reply = await bot.conversation.respond(ctx, text)
    return reply, target


async def test_prompt_never_exceeds_a_small_window_and_keeps_the_newest(
    make_config: MakeConfig,
) -> None:
    config = make_config(
        backends={"local": {"n_ctx": 512}},
        defaults={"max_tokens": 48, "temperature": 0.0},
    )
    async with build_bot(config, base_dir=REPO) as bot:
        starts = []
        for turn in range(14):
            text = f"Message number {turn}: tell me one short fact about the number {turn}."
            reply, _ = await respond(bot, text)
            assert reply.usage is not None
            assert reply.usage.prompt_tokens + 48 <= 512
            chat = await bot.repo.chat(incoming("", "a").chat)
            starts.append(chat.window_start_id)
            rows = await bot.conversation.planner.history(chat, bot.backends["local"])
            plan = await bot.conversation.planner.plan(chat, bot.settings_for(chat), rows, None)
            # The newest turn is always kept.
            assert plan.messages[-1]["content"] == reply.text
            assert plan.messages[-2]["content"] == text
        # Hysteresis: the prompt start moved only a few times in 14 turns.
        moves = sum(1 for a, b in itertools.pairwise(starts) if a != b)
        assert 1 <= moves <= 4
        report = (await say(bot, "/context")).text
        assert "Context window: 512 tokens" in report
        dropped = int(report.rsplit(":", 1)[1])
        assert dropped > 0


async def test_same_seed_same_history_gives_the_same_reply(bot: Bot) -> None:
    # Three pairs of chats: whether a chat's reply is settled, or another chat took its slot,
    # when its next turn comes depends on timing; a seeded follow-up must not. (A slot that
    # counted the prompt's final token, evaluated alone, as reusable made 7 of 12 rounds
    # differ.)
    for round_ in range(3):
        a, b = f"a{round_}", f"b{round_}"
        for chat in (a, b):
            await say(bot, "/seed 1234", chat)
            await say(bot, "/temp 1.0", chat)
        first, _ = await respond(bot, "Write a short poem about the sea.", a)
        second, _ = await respond(bot, "Write a short poem about the sea.", b)
        assert first.seed == second.seed == 1234
        assert first.text == second.text
        # A follow-up turn in both chats: same history, same seed, same reply.
        third, _ = await respond(bot, "Now one about mountains.", a)
        fourth, _ = await respond(bot, "Now one about mountains.", b)
        assert third.text == fourth.text


async def test_random_seed_gives_different_replies(bot: Bot) -> None:
    texts = set()
    seeds = set()
    for chat in ("a", "b", "c"):
        await say(bot, "/temp 1.2", chat)
        reply, _ = await respond(bot, "Invent a name for a new colour.", chat)
        texts.add(reply.text)
        seeds.add(reply.seed)
    assert len(seeds) == 3
    assert len(texts) > 1
    assert f"used seed {reply.seed}" in (await say(bot, "/seed", "c")).text


async def test_interleaved_chats_reuse_their_own_cached_prefix(bot: Bot) -> None:
    long_persona = "You are a patient teacher. " * 30
    for chat in ("a", "b"):
        await say(bot, f"/persona {long_persona}", chat)
        await say(bot, "/maxtokens 16", chat)
        await respond(bot, "What is a noun?", chat)
    # b ran last, so the live context holds b; a's turn must restore a's saved state.
    reply, _ = await respond(bot, "And a verb?", "a")
    assert reply.usage is not None
    assert (reply.usage.cached_prompt_tokens or 0) > 150


async def test_generation_runs_off_the_event_loop(bot: Bot) -> None:
    await say(bot, "/maxtokens 200", "slow")
    await say(bot, "/temp 0", "slow")
    first_chunk = asyncio.Event()

    class Target(MemoryTarget):
        async def send(self, text: str) -> int:
            first_chunk.set()
            return await super().send(text)

    target = Target()
    generation = asyncio.create_task(
        bot.router.handle(incoming("Count from 1 to 100, separated by commas.", "slow"), target)
    )
    await first_chunk.wait()
    # While the model generates, other chats' commands are answered.
    answer = await say(bot, "/temp 0.5", "other")
    assert "set to 0.5" in answer.text
    assert not generation.done()
    await generation


async def test_a_cancelled_reply_is_stored_as_interrupted(bot: Bot) -> None:
    await say(bot, "/maxtokens 200")
    got_text = asyncio.Event()

    class Target(MemoryTarget):
        async def send(self, text: str) -> int:
            got_text.set()
            return await super().send(text)

    task = asyncio.create_task(
        bot.router.handle(incoming("Tell me a long story about a dragon."), Target())
    )
    await got_text.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    chat = await bot.repo.chat(incoming("").chat)
    rows = await bot.repo.window(chat.id, 0)
    assert [r.role for r in rows] == ["user", "assistant"]
    assert rows[0].status == MessageStatus.COMPLETE
    assert rows[1].status == MessageStatus.INTERRUPTED
    assert rows[1].content
    # The bot still answers afterwards.
    assert (await say(bot, "/temp")).text.startswith("temperature is")


class BreaksMidway(LlamaCppBackend):
    """The real backend, failing after a few chunks (as a crashed remote daemon would)."""

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        count = 0
        async for chunk in super().stream(messages, params, cache_key=cache_key):
            yield chunk
            count += 1
            if count == 3:
                raise BackendUnavailable("the model process went away")


async def test_a_backend_failure_mid_reply_keeps_the_partial_text(
    make_config: MakeConfig,
) -> None:
    config = make_config()
    backend = BreaksMidway("local", LlamaCppConfig())
    async with build_bot(config, backends={"local": backend}, base_dir=REPO) as bot:
        reply = await say(bot, "Tell me about cats.")
        assert "[interrupted]" in reply.messages[0]
        assert reply.messages[-1] == "⚠ the model process went away"
        chat = await bot.repo.chat(incoming("").chat)
        rows = await bot.repo.window(chat.id, 0)
        assert rows[-1].status == MessageStatus.INTERRUPTED
        assert rows[-1].content
        assert (await say(bot, "/temp")).text.startswith("temperature is")


async def test_a_message_too_long_for_the_window_is_refused_and_not_stored(
    make_config: MakeConfig,
) -> None:
    async with build_bot(
        make_config(backends={"local": {"n_ctx": 512}}, defaults={"max_tokens": 64})
    ) as bot:
        reply = await say(bot, "word " * 800)
        assert "leave no room in the 512-token window" in reply.text
        assert "(0 messages)" in (await say(bot, "/context")).text


async def test_a_waiting_chat_is_told_its_place_in_the_queue(make_config: MakeConfig) -> None:
    # One slot, so a second chat waits (with more slots it joins the batch at once).
    async with build_bot(make_config(backends={"local": {"parallel": 1}})) as bot:
        await _told_its_place(bot)


async def _told_its_place(bot: Bot) -> None:
    await say(bot, "/maxtokens 200", "slow")
    first_chunk = asyncio.Event()

    class Recording(MemoryTarget):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list[str] = []

        async def send(self, text: str) -> int:
            self.sent.append(text)
            first_chunk.set()
            return await super().send(text)

    slow = asyncio.create_task(
        bot.router.handle(
            incoming("Count from 1 to 100, separated by commas.", "slow"), Recording()
        )
    )
    await first_chunk.wait()
    waiting = Recording()
    await bot.router.handle(incoming("Hello!", "other"), waiting)
    await slow
    assert waiting.sent[0] == "⏳ In the queue: 1 reply to generate before yours."
    assert len(waiting.messages) == 1
    assert not waiting.messages[0].startswith("⏳")  # replaced by the reply


async def test_a_follow_up_evaluates_only_the_new_message_seeded_or_not(bot: Bot) -> None:
    await say(bot, "/seed 7", "seeded")
    for chat in ("seeded", "random"):
        await say(bot, "/maxtokens 40", chat)
        first, _ = await respond(bot, "Tell me about lighthouses.", chat)
        follow, _ = await respond(bot, "Why?", chat)
        assert follow.usage is not None
        assert first.usage is not None
        # The previous reply's tokens are reused, not evaluated again: a random-seed chat keeps
        # them as generated, a seeded one re-evaluated them after its reply was delivered.
        assert follow.usage.prompt_tokens > first.usage.prompt_tokens + 10
        # What is evaluated: the new message with its framing (~13 tokens for "Why?") and, at
        # most, the reply's last sampled token, which generation never decodes.
        assert follow.usage.prompt_tokens - (follow.usage.cached_prompt_tokens or 0) <= 16
