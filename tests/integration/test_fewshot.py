"""/examples: few-shot pairs in the prompt, in order, after the persona; kept across restarts;
counted in the window and never trimmed before the history; validated; guarded in groups."""

from __future__ import annotations

import re

import pytest

from botkit.adapters.memory import MemoryTarget
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.events import ChatKey, Incoming, User
from botkit.core.settings import EXAMPLE_MAX_CHARS, MAX_EXAMPLES
from tests.conftest import REPO, MakeConfig, say

LOVED = "Classify this review: I loved this movie!"
CHAIR = "Classify this review: I don't like this chair."


async def test_examples_go_after_the_persona_in_order_and_survive_a_restart(
    make_config: MakeConfig,
) -> None:
    config = make_config()
    for run in range(2):
        backend = ScriptedBackend("local")
        async with build_bot(config, backends={"local": backend}) as bot:
            if run == 0:
                assert (
                    "example 1 added" in (await say(bot, f"/examples add {LOVED} => Positive")).text
                )
                added = await say(bot, f"/examples add {CHAIR} => Negative")
                assert "example 2 added" in added.text
                await say(bot, "Hello")
            await say(bot, "Classify this review: the soup was cold.")
            prompt = backend.prompts[-1]
            assert prompt[:5] == [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": LOVED},
                {"role": "assistant", "content": "Positive"},
                {"role": "user", "content": CHAIR},
                {"role": "assistant", "content": "Negative"},
            ]
            # Then the history, then the new message.
            assert prompt[5]["content"] == "Hello"
            assert prompt[-1]["content"] == "Classify this review: the soup was cold."
            listing = (await say(bot, "/examples")).text
            assert re.search(rf"1\. {re.escape(LOVED)} => Positive  \(\d+ tokens\)", listing)
            assert re.search(rf"2\. {re.escape(CHAIR)} => Negative  \(\d+ tokens\)", listing)


async def test_examples_count_in_the_window_and_outlast_the_history(
    make_config: MakeConfig,
) -> None:
    config = make_config(
        backends={"local": {"n_ctx": 512}}, defaults={"max_tokens": 48, "temperature": 0.0}
    )
    async with build_bot(config, base_dir=REPO) as bot:
        await say(bot, "/examples add What is 2+2? => Four.")
        await say(bot, "/examples add What is 3+3? => Six.")
        backend = bot.backends["local"]
        pairs = [("What is 2+2?", "Four."), ("What is 3+3?", "Six.")]
        cost = 0
        for said, answered in pairs:
            cost += await backend.message_tokens({"role": "user", "content": said})
            cost += await backend.message_tokens({"role": "assistant", "content": answered})
        text = (await say(bot, "/context")).text
        assert f"examples:       {cost} (2 pairs" in text
        assert f"2 of at most 8, {cost} tokens" in (await say(bot, "/examples")).text
        # Enough turns to make the history trim: the examples stay, first, every time.
        for turn in range(12):
            fact = f"tell me one short fact about the number {turn}. " * 4
            await say(bot, f"Message {turn}: {fact}")
            chat = await bot.repo.chat(ChatKey("test", "a"))
            settings = bot.settings_for(chat)
            rows = await bot.conversation.planner.history(chat, backend)
            plan = await bot.conversation.planner.plan(chat, settings, rows, None)
            assert [m["content"] for m in plan.messages[1:5]] == [
                "What is 2+2?", "Four.", "What is 3+3?", "Six."
            ]  # fmt: skip
            assert plan.examples_tokens == cost
            assert plan.used + plan.reserve <= 512
        dropped = int((await say(bot, "/context")).text.rsplit(":", 1)[1])
        assert dropped > 0  # the history was trimmed, the examples were not


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "/examples add just text",
            "put => exactly once between the input and the output (found 0)",
        ),
        (
            "/examples add a => b => c",
            "put => exactly once between the input and the output (found 2)",
        ),
        ("/examples add  => Positive", "the input before/after => is empty"),
        ("/examples add Great! =>", "the output before/after => is empty"),
        ("/examples add", "add needs an example. Usage: /examples add <input> => <output>"),
        (f"/examples add {'x' * (EXAMPLE_MAX_CHARS + 1)} => y", "each side is at most 500"),
        ("/examples remove 1", "this chat has no examples to remove"),
        ("/examples clear now", "/examples clear takes nothing after it"),
        ("/examples show", "is not a valid action"),
    ],
)
async def test_bad_examples_get_a_clear_message_and_change_nothing(
    bot: Bot, command: str, message: str
) -> None:
    reply = (await say(bot, command)).text
    assert reply.startswith("⚠")
    assert message in reply
    assert "No examples in this chat" in (await say(bot, "/examples")).text


async def test_the_count_the_numbers_and_the_window_are_checked(make_config: MakeConfig) -> None:
    async with build_bot(make_config(), backends={"local": ScriptedBackend("local")}) as bot:
        for n in range(MAX_EXAMPLES):
            assert "added" in (await say(bot, f"/examples add q{n} => a{n}")).text
        full = (await say(bot, "/examples add one => more")).text
        assert f"this chat has {MAX_EXAMPLES} examples, the most allowed ({MAX_EXAMPLES})" in full
        for bad in ("0", "9", "two", ""):
            reply = (await say(bot, f"/examples remove {bad}")).text
            assert "remove takes the number of an example: 1 to 8" in reply
        assert "example 3 removed: q2 => a2" in (await say(bot, "/examples remove 3")).text
        listing = (await say(bot, "/examples")).text
        assert "3. q3 => a3" in listing
        assert "q2" not in listing
        assert "7 examples cleared" in (await say(bot, "/examples clear")).text
    # A window that the examples would crowd out refuses them.
    tiny = ScriptedBackend("local", context_window=600)
    async with build_bot(make_config(), backends={"local": tiny}) as bot:
        long = "word " * 90
        assert "added" in (await say(bot, f"/examples add {long} => ok")).text
        refused = (await say(bot, f"/examples add {long} => ok")).text
        assert "may take at most half of what the 600-token window leaves" in refused
        assert "1 of at most" in (await say(bot, "/examples")).text


async def test_only_people_who_may_change_settings_change_examples_in_groups(bot: Bot) -> None:
    def member(text: str, *, allowed: bool) -> Incoming:
        user = User(id="m", name="member", can_change_settings=allowed)
        return Incoming(chat=ChatKey("test", "group"), user=user, text=text, is_dm=False)

    target = MemoryTarget()
    await bot.router.handle(member("/examples add Hi => Hello", allowed=False), target)
    assert "only people allowed to change this chat's settings can use /examples" in target.text
    listing = MemoryTarget()
    await bot.router.handle(member("/examples", allowed=False), listing)
    assert "No examples in this chat" in listing.text  # anyone may look
    admin = MemoryTarget()
    await bot.router.handle(member("/examples add Hi => Hello", allowed=True), admin)
    assert "example 1 added" in admin.text
