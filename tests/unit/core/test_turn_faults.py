"""Turns under faults and in odd orders (issue 23): a chat's commands answered in arrival order,
any exception storing the reply as interrupted, a /retry whose question no longer fits, and
persona, examples and reply reserve checked together. On the scripted backend: no model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from botkit.adapters.memory import MemoryTarget
from botkit.backends.base import Chunk, GenerationParams, Message
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.planner import ESTIMATED
from botkit.store.models import MessageStatus
from botkit.tools.spec import ToolChoice, ToolSpec
from tests.conftest import MakeConfig, incoming, say


async def rows_of(bot: Bot, chat: str = "a") -> list[tuple[str, str, str]]:
    record = await bot.repo.chat(incoming("", chat).chat)
    return [(r.role, r.content, r.status) for r in await bot.repo.window(record.id, 0)]


class Ordered(MemoryTarget):
    """Records, across every target of a test, which message each answer belongs to."""

    def __init__(self, log: list[tuple[str, str]], asked: str) -> None:
        super().__init__()
        self._log = log
        self._asked = asked

    async def send(self, text: str) -> int:
        self._log.append((self._asked, text))
        return await super().send(text)


async def test_a_batch_of_commands_is_answered_in_order_each_seeing_the_ones_before(
    make_config: MakeConfig,
) -> None:
    config = make_config(service={"rate_limit_per_minute": 0})
    batch = ["/seed 5", "/temp 0.5", "/temp 0.9", "/seed 6", "/topk 7", "/topk 9",
             "/temp", "/seed", "/topk"]  # fmt: skip
    async with build_bot(config, backends={"local": ScriptedBackend("local")}) as bot:
        answers: list[tuple[str, str]] = []
        # As an adapter delivers one platform batch: every message handled at once.
        await asyncio.gather(
            *(bot.router.handle(incoming(text), Ordered(answers, text)) for text in batch)
        )
    assert [asked for asked, _ in answers] == batch
    said = dict(answers)
    assert "set to 0.9 (was 0.5)" in said["/temp 0.9"]
    assert "set to 9 (was 7)" in said["/topk 9"]
    assert "seed set to 6" in said["/seed 6"]
    assert said["/temp"].startswith("temperature is 0.9")
    assert said["/seed"].startswith("seed is 6")
    assert said["/topk"].startswith("top_k is 9")


class Breaking(ScriptedBackend):
    """Streams a first piece, then fails with an error that is not a BackendError (malformed
    server output, a bug in an engine)."""

    def __init__(self) -> None:
        super().__init__("local")
        self.fail = True

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        if not self.fail:
            async for chunk in super().stream(messages, params, cache_key=cache_key):
                yield chunk
            return
        yield Chunk("Half a rep")
        raise RuntimeError("malformed event in the stream")


async def test_any_exception_mid_reply_stores_it_interrupted_with_its_text(
    make_config: MakeConfig,
) -> None:
    backend = Breaking()
    async with build_bot(make_config(), backends={"local": backend}) as bot:
        answer = await say(bot, "Tell me a story")
        assert "Half a rep" in answer.text
        assert "Something went wrong on our side" in answer.text
        assert await rows_of(bot) == [
            ("user", "Tell me a story", MessageStatus.COMPLETE),
            ("assistant", "Half a rep", MessageStatus.INTERRUPTED),
        ]
        assert bot.repo._guard.in_flight == {}  # nothing of the turn is left behind
        backend.fail = False
        assert "echo: And then?" in (await say(bot, "And then?")).text


class CannotCount(ScriptedBackend):
    """Streams whole replies, but its tokenizer fails for replies (a tokenize endpoint that
    went down between the prompt and the end of the reply)."""

    def __init__(self) -> None:
        super().__init__("local")
        self.broken = True

    async def message_tokens(self, message: Message) -> int:
        if self.broken and message["role"] == "assistant":
            raise RuntimeError("tokenize endpoint: 500")
        return await super().message_tokens(message)


async def test_a_reply_that_cannot_be_counted_is_stored_with_an_estimate_recounted_later(
    make_config: MakeConfig,
) -> None:
    backend = CannotCount()
    async with build_bot(make_config(), backends={"local": backend}) as bot:
        backend.enqueue("A complete answer of some length.")
        answer = await say(bot, "Question one")
        assert answer.text == "A complete answer of some length."
        record = await bot.repo.chat(incoming("").chat)
        stored = await bot.repo.window(record.id, 0)
        assert (stored[1].content, stored[1].status) == (answer.text, MessageStatus.COMPLETE)
        assert stored[1].tokenizer_id == ESTIMATED
        backend.broken = False
        await say(bot, "Question two")
        recounted = await bot.repo.window(record.id, 0)
        exact = await backend.message_tokens({"role": "assistant", "content": answer.text})
        assert (recounted[1].tokenizer_id, recounted[1].token_count) == ("scripted", exact)


async def test_a_retry_whose_question_no_longer_fits_is_refused_and_changes_nothing(
    make_config: MakeConfig,
) -> None:
    backend = ScriptedBackend("local", context_window=2048)
    config = make_config(service={"rate_limit_per_minute": 0})
    async with build_bot(config, backends={"local": backend}) as bot:
        question = "word " * 880  # 1,104 tokens here (one per four characters, plus framing)
        await say(bot, "/maxtokens 8")
        backend.enqueue("Short answer.")
        await say(bot, question)
        before = await rows_of(bot)
        record = await bot.repo.chat(incoming("").chat)
        await say(bot, "/maxtokens 1023")
        refused = (await say(bot, "/retry")).text
        assert "1023 tokens reserved for the reply" in refused
        assert "lower /maxtokens" in refused
        assert len(backend.prompts) == 1  # nothing was generated without the question
        assert await rows_of(bot) == before
        assert (await bot.repo.chat(incoming("").chat)).window_start_id == record.window_start_id
        # With the reserve lowered again, the retry answers the question.
        await say(bot, "/maxtokens 8")
        backend.enqueue("A better short answer.")
        assert "A better short answer." in (await say(bot, "/retry")).text
        assert backend.prompts[-1][-1]["content"] == question.strip()


async def test_persona_examples_and_reply_reserve_are_checked_together(
    make_config: MakeConfig,
) -> None:
    backend = ScriptedBackend("local", context_window=4096)
    config = make_config(service={"rate_limit_per_minute": 0})
    async with build_bot(config, backends={"local": backend}) as bot:
        example = "word " * 100  # 129 tokens a message, 258 a pair
        for _ in range(6):
            assert "added" in (await say(bot, f"/examples add {example} => {example}")).text
        # The persona alone would fit; beside the examples it leaves no room.
        persona = "p" * 4000  # 1,004 tokens: below half of the 3,832 left, alone
        refused = (await say(bot, f"/persona {persona}")).text
        assert "Lower one" in refused
        assert "remove examples" in refused
        assert "persona (" in refused
        assert "persona set" in (await say(bot, f"/persona {'p' * 400}")).text
        # A reply reserve that each alone would allow, but not with persona and examples.
        refused = (await say(bot, "/maxtokens 2000")).text
        assert "/maxtokens to 784 or less" in refused
        assert "max_tokens is 256" in (await say(bot, "/maxtokens")).text
        # Whatever was accepted, a message still fits.
        assert "echo: hello" in (await say(bot, "hello")).text
