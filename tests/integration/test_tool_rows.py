"""A tool round's rows in the store, on SQLite and PostgreSQL: written ahead in order,
finished, read back with their calls, and trimmed as pairs (never a call without its results
or a result without its call)."""

from __future__ import annotations

import pytest

from botkit.backends.base import Message
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.store.models import MessageStatus
from tests.conftest import MakeConfig, incoming, say
from tests.tool_plugin import call, ran, tools


def _pairs_kept(prompt: list[Message]) -> None:
    """Every result follows its call's assistant message; every call is followed by all of
    its results."""
    for index, message in enumerate(prompt):
        if "tool_calls" in message:
            ids = [c["id"] for c in message["tool_calls"]]
            after = [m.get("tool_call_id") for m in prompt[index + 1 : index + 1 + len(ids)]]
            assert after == ids, f"a call without its results at {index}"
        if message["role"] == "tool":
            back = index - 1
            while prompt[back]["role"] == "tool":
                back -= 1
            ids = [c["id"] for c in prompt[back].get("tool_calls", [])]
            assert message.get("tool_call_id") in ids, f"a result without its call at {index}"


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_tool_rounds_are_stored_in_order_and_trimmed_in_pairs(
    make_config: MakeConfig, db_url: str
) -> None:
    ran.clear()
    backend = ScriptedBackend("local", context_window=1500)
    backend.tools_unsupported = None
    config = make_config(
        storage={"url": db_url}, service={"rate_limit_per_minute": 0},
        defaults={"max_tokens": 64}, tools={"per_minute": 0},
    )  # fmt: skip
    bot = build_bot(config, backends={"local": backend})
    bot.registry.add_plugin(tools)
    async with bot:
        for n in range(20):
            backend.enqueue_calls(call("add", {"a": n}, f"a{n}"), call("add", {"a": n}, f"b{n}"))
            backend.enqueue(f"answer {n} " + "word " * (5 + n % 7 * 6))
            await say(bot, f"question {n} " + "word " * (3 + n % 5 * 5))
        chat = await bot.repo.chat(incoming("").chat)
        bot.repo.drop_caches()  # read back from the database, not the window cache
        rows = await bot.repo.window(chat.id, 0)
    assert len(ran) == 40
    assert [r.role for r in rows[:5]] == ["user", "assistant", "tool", "tool", "assistant"]
    assert rows[1].tool == {"calls": [
        {"id": "a0", "name": "add", "arguments": '{"a": 0}'},
        {"id": "b0", "name": "add", "arguments": '{"a": 0}'},
    ]}  # fmt: skip
    assert rows[2].tool == {"call_id": "a0", "name": "add", "error": False}
    assert rows[2].content == "0"
    assert all(r.status == MessageStatus.COMPLETE for r in rows)
    assert chat.window_start_id > rows[0].id  # the window moved on
    kept = [r for r in rows if r.id >= chat.window_start_id]
    assert kept[0].role == "user"
    for prompt in backend.prompts:
        _pairs_kept(prompt)
