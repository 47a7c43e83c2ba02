"""A turn with tools on the scripted backend (the fast tier): the model's calls run within
their bounds, are stored ahead as rows in order, shown in the reply and given back to the
model; trimming keeps a call with its results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import text

from botkit.adapters.memory import MemoryTarget
from botkit.backends.base import BackendUnavailable, Message
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.events import ChatKey, Incoming, User
from botkit.core.planner import NO_RESULT
from botkit.store.models import MessageStatus
from botkit.store.records import NewMessage
from botkit.store.recovery import recover
from botkit.store.repository import Repository
from botkit.tools.spec import ToolSpec
from tests.conftest import MakeConfig, incoming, say
from tests.tool_plugin import call, ran, tools


@pytest.fixture
async def bot(make_config: MakeConfig) -> AsyncIterator[Bot]:
    ran.clear()
    backend = ScriptedBackend("local")
    backend.tools_unsupported = None  # a model that calls tools by itself
    config = make_config(
        service={"rate_limit_per_minute": 0},
        tools={"timeout": 0.5, "max_result_chars": 1000, "confirm_timeout": 5},
    )
    built = build_bot(config, backends={"local": backend})
    built.registry.add_plugin(tools)
    async with built:
        yield built


def scripted(bot: Bot) -> ScriptedBackend:
    backend = bot.backends["local"]
    assert isinstance(backend, ScriptedBackend)
    return backend


def tool_messages(prompt: list[Message]) -> list[Message]:
    return [m for m in prompt if m["role"] == "tool" or "tool_calls" in m]


async def test_a_call_runs_is_stored_in_order_and_the_model_answers_from_its_result(
    bot: Bot,
) -> None:
    backend = scripted(bot)
    backend.enqueue_calls(call("add", {"a": 2, "b": 40}))
    backend.enqueue("The sum is 42.")
    target = await say(bot, "What is 2 + 40?")
    assert ran == ["add 2 40"]
    assert "🔧 add(" in target.text
    assert "→ 42" in target.text
    assert target.text.rstrip().endswith("The sum is 42.")
    second = backend.prompts[1]
    assert second[-2:] == [
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "add", "arguments": '{"a": 2, "b": 40}'}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "add", "content": "42"},
    ]  # fmt: skip
    offered = [t.name for t in backend.tool_requests[0][0]]
    assert "add" in offered
    assert "time" in offered
    chat = await bot.repo.chat(incoming("").chat)
    rows = await bot.repo.window(chat.id, 0)
    assert [(r.role, r.content, r.status) for r in rows] == [
        ("user", "What is 2 + 40?", MessageStatus.COMPLETE),
        ("assistant", "", MessageStatus.COMPLETE),
        ("tool", "42", MessageStatus.COMPLETE),
        ("assistant", "The sum is 42.", MessageStatus.COMPLETE),
    ]
    # The next turn's prompt keeps the round, in order, with the answer after it.
    backend.enqueue("Yes.")
    await say(bot, "Sure?")
    assert [m["role"] for m in backend.prompts[-1][1:]] == [
        "user", "assistant", "tool", "assistant", "user",
    ]  # fmt: skip
    stats = await say(bot, "/stats")
    assert "tools:" not in stats.text  # the last reply ("Yes.") called none


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ('{"a": 2,', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"a": -5}, "not a valid a"),
        ({"a": 1, "c": 3}, "has no argument 'c'"),
        ({"b": 3}, "needs a"),
    ],
)
async def test_bad_arguments_are_refused_before_the_tool_runs_and_the_model_is_told(
    bot: Bot, arguments: Any, said: str
) -> None:
    backend = scripted(bot)
    backend.enqueue_calls(call("add", arguments))
    backend.enqueue("Sorry.")
    target = await say(bot, "Add things")
    assert ran == []
    result = backend.prompts[1][-1]
    assert result["role"] == "tool"
    assert said in result["content"]
    assert "⚠" in target.text
    assert target.text.rstrip().endswith("Sorry.")


async def test_an_unknown_tool_a_hung_one_and_a_failing_one_each_end_with_a_clear_result(
    bot: Bot,
) -> None:
    backend = scripted(bot)
    backend.enqueue_calls(call("nope", {}, "c1"), call("hang", {}, "c2"), call("boom", {}, "c3"))
    backend.enqueue("Done.")
    started = time.monotonic()
    target = await say(bot, "Try them")
    results = [m["content"] for m in backend.prompts[1] if m["role"] == "tool"]
    assert "there is no tool 'nope'" in results[0]
    assert "did not finish within 0.5 s" in results[1]
    assert "boom failed: ZeroDivisionError: division by zero" in results[2]
    assert ran == ["hang", "boom"]
    assert target.text.rstrip().endswith("Done.")
    assert time.monotonic() - started < 30  # the hung tool did not hold the turn
    backend.enqueue("Still here.")
    assert (await say(bot, "Hello?")).text == "Still here."


async def test_a_10_mb_result_is_cut_to_the_limit_in_the_prompt_and_the_store(bot: Bot) -> None:
    backend = scripted(bot)
    backend.enqueue_calls(call("big", {}))
    backend.enqueue("Big.")
    await say(bot, "Go big")
    result = backend.prompts[1][-1]["content"]
    assert len(result) < 1200
    assert "the result had 10,000,000 characters; 1,000 kept" in result
    chat = await bot.repo.chat(incoming("").chat)
    stored = [r for r in await bot.repo.window(chat.id, 0) if r.role == "tool"]
    assert stored[0].content == result


async def test_rounds_stop_at_max_rounds_and_the_last_may_not_call(bot: Bot) -> None:
    backend = scripted(bot)
    for n in range(5):
        backend.enqueue_calls(call("add", {"a": n}, f"c{n}"))
    await say(bot, "Keep adding")
    choices = [choice for _, choice in backend.tool_requests]
    assert choices == ["auto", "auto", "auto", "none"]  # [tools] max_rounds = 3
    assert backend.tool_requests[-1][0] == ()
    assert ran == ["add 0 0", "add 1 0", "add 2 0"]
    stats = await say(bot, "/stats")
    assert "tools: 3 call(s)" in stats.text


async def test_a_tool_that_needs_confirmation_runs_only_after_the_asker_confirms(
    bot: Bot,
) -> None:
    backend = scripted(bot)
    backend.enqueue_calls(call("launch", {}))
    backend.enqueue("Launched.")
    turn = asyncio.create_task(say(bot, "Launch it"))
    chat = await bot.repo.chat(incoming("").chat)
    assert await bot.tools.confirmations.waiting(chat.id) == "launch"
    assert ran == []
    assert "Only the person" in (await bot_say(bot, "/confirm", user="mallory")).text
    assert "launch: confirmed" in (await bot_say(bot, "/confirm")).text
    target = await turn
    assert ran == ["launch"]
    assert "/confirm or /deny" in target.text
    assert target.text.rstrip().endswith("Launched.")

    backend.enqueue_calls(call("launch", {}))
    backend.enqueue("Not launched.")
    turn = asyncio.create_task(say(bot, "Launch again"))
    await bot.tools.confirmations.waiting(chat.id)
    assert "launch: denied" in (await bot_say(bot, "/deny")).text
    await turn
    assert ran == ["launch"]
    assert "denied" in backend.prompts[-1][-1]["content"]
    assert "No tool call is waiting" in (await bot_say(bot, "/confirm")).text


async def bot_say(bot: Bot, line: str, *, user: str = "alice") -> MemoryTarget:
    target = MemoryTarget()
    await bot.router.handle(incoming(line, user=user), target)
    return target


async def test_tools_off_in_a_chat_are_not_offered_and_switching_needs_the_permission(
    bot: Bot,
) -> None:
    backend = scripted(bot)
    assert "add is now off" in (await say(bot, "/tools off add")).text
    refused = MemoryTarget()
    member = User("bob", "bob", can_change_settings=False)
    await bot.router.handle(
        Incoming(chat=ChatKey("test", "a"), user=member, text="/tools on add", is_dm=False),
        refused,
    )
    assert "only people allowed to change this chat's settings" in refused.text
    await say(bot, "Hello")
    offered = [t.name for t in backend.tool_requests[-1][0]]
    assert "add" not in offered
    assert "time" in offered
    listing = (await say(bot, "/tools")).text
    assert "⛔ add" in listing
    assert "✅ time" in listing
    assert '"a"' in listing
    assert "unknown" not in (await say(bot, "/tools on add")).text


async def test_a_forced_call_on_a_model_that_does_not_call_by_itself(bot: Bot) -> None:
    backend = scripted(bot)
    backend.tools_unsupported = "this model was not trained to call tools"
    backend.enqueue("Plain answer.")
    await say(bot, "Hello")
    assert backend.tool_requests[-1] == ((), "none")  # nothing offered on its own
    assert "given no tools" in (await say(bot, "/tools")).text
    backend.enqueue_calls(call("add", {"a": 1, "b": 2}))
    backend.enqueue("Three.")
    target = await say(bot, "/tool add What is 1 + 2?")
    assert [c for _, c in backend.tool_requests[-2:]] == ["add", "none"]
    assert [t.name for t in backend.tool_requests[-2][0]] == ["add"]
    assert ran == ["add 1 2"]
    assert target.text.rstrip().endswith("Three.")
    assert "does not exist" in (await say(bot, "/tool nope hi")).text


async def test_context_counts_the_tool_declarations(bot: Bot) -> None:
    report = (await say(bot, "/context")).text
    line = next(x for x in report.splitlines() if x.strip().startswith("tools:"))
    assert int(line.split(":")[1].split()[0]) > 0


async def test_trimming_keeps_each_call_with_its_results(make_config: MakeConfig) -> None:
    ran.clear()
    backend = ScriptedBackend("local", context_window=1500)
    backend.tools_unsupported = None
    config = make_config(service={"rate_limit_per_minute": 0}, defaults={"max_tokens": 64})
    built = build_bot(config, backends={"local": backend})
    built.registry.add_plugin(tools)
    async with built as bot:
        for n in range(25):
            backend.enqueue_calls(call("add", {"a": n}, f"a{n}"), call("add", {"a": n}, f"b{n}"))
            # Sizes vary, so that trimming stops at every kind of row in turn.
            backend.enqueue(f"answer {n} " + "word " * (5 + n % 7 * 6))
            await say(bot, f"question {n} " + "word " * (3 + n % 5 * 5))
    trimmed = 0
    for prompt in backend.prompts:
        assert await backend.count_tokens(prompt) <= 1500
        for index, message in enumerate(prompt):
            if message["role"] == "tool":
                owner = prompt[index - 1]
                while owner["role"] == "tool":
                    owner = prompt[prompt.index(owner) - 1]
                ids = [c["id"] for c in owner.get("tool_calls", [])]
                assert message.get("tool_call_id") in ids, "a result without its call"
            if "tool_calls" in message:
                after = [m.get("tool_call_id") for m in prompt[index + 1 : index + 3]]
                assert after == [c["id"] for c in message["tool_calls"]], "a call without results"
        trimmed += (
            prompt[1]["content"].startswith("question") and "question 0" not in prompt[1]["content"]
        )
    assert trimmed  # the window did move on


async def test_a_crash_while_a_tool_runs_recovers_as_interrupted(repo: Repository) -> None:
    from botkit.backends.base import Role

    chat = await repo.chat(ChatKey("test", "crash"))
    question = NewMessage(Role.USER, None, "Roll", 2, "scripted", MessageStatus.COMPLETE)
    _, reply_id = await repo.begin_turn(chat.id, question)
    made = {"calls": [{"id": "c1", "name": "roll", "arguments": "{}"}]}
    calls = NewMessage(Role.ASSISTANT, None, "", 9, "scripted", MessageStatus.COMPLETE, tool=made)
    waiting = NewMessage(Role.TOOL, None, "", 0, "", MessageStatus.GENERATING,
                         tool={"call_id": "c1", "name": "roll"})  # fmt: skip
    await repo.tool_round(chat.id, reply_id, calls, [waiting])
    # The process dies here: its rows stay generating, with no live lease behind them.
    async with repo.transaction() as conn:
        cut, _ = await recover(conn, time.time(), 0.0)
    assert cut == 2  # the result and the next reply
    repo.drop_caches()
    rows = await repo.window(chat.id, 0)
    assert [(r.role, r.status) for r in rows] == [
        ("user", MessageStatus.COMPLETE),
        ("assistant", MessageStatus.COMPLETE),
        ("tool", MessageStatus.INTERRUPTED),
        ("assistant", MessageStatus.INTERRUPTED),
    ]
    from botkit.core.planner import render

    kept = [render(r) for r in rows if r.content or r.tool]
    assert kept[-1] == {"role": "tool", "tool_call_id": "c1", "name": "roll", "content": NO_RESULT}
    async with repo.transaction() as conn:
        found = await conn.execute(text("SELECT count(*) FROM messages WHERE status='generating'"))
        assert found.scalar_one() == 0


async def test_a_tool_called_too_often_in_a_chat_is_refused_by_the_limiter(
    make_config: MakeConfig,
) -> None:
    ran.clear()
    backend = ScriptedBackend("local")
    backend.tools_unsupported = None
    config = make_config(service={"rate_limit_per_minute": 0}, tools={"per_minute": 2})
    built = build_bot(config, backends={"local": backend})
    built.registry.add_plugin(tools)
    async with built as bot:
        backend.enqueue_calls(*(call("add", {"a": n}, f"c{n}") for n in range(3)))
        await say(bot, "Add three times")
    results = [m["content"] for m in backend.prompts[1] if m["role"] == "tool"]
    assert results[:2] == ["0", "1"]
    assert "more than 2 times a minute in this chat" in results[2]
    assert ran == ["add 0 0", "add 1 0"]


class CannotCount(ScriptedBackend):
    """A server whose tokenizer endpoint is down when the tools are counted."""

    async def tool_tokens(self, tools: Sequence[ToolSpec]) -> int:
        raise BackendUnavailable("the tokenize endpoint answered 503")


async def test_tools_that_cannot_be_counted_are_left_out_and_the_chat_goes_on(
    make_config: MakeConfig,
) -> None:
    backend = CannotCount("local")
    backend.tools_unsupported = None
    backend.enqueue("Hello without tools.")
    config = make_config(service={"rate_limit_per_minute": 0})
    async with build_bot(config, backends={"local": backend}) as bot:
        assert (await say(bot, "Hi")).text == "Hello without tools."
        assert backend.tool_requests[-1] == ((), "none")
        context = (await say(bot, "/context")).text
        assert "could not be counted (the tokenize endpoint answered 503)" in context
