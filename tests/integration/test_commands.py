"""Commands: validation with clear messages, per-chat settings, /context, /model, /help."""

from __future__ import annotations

import pytest

from botkit.compose import build_bot
from botkit.core.app import Bot
from tests.conftest import REPO, MakeConfig, say


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/temp abc", "'abc' is not a valid value"),
        ("/temp -1", "greater than or equal to 0"),
        ("/temp 9", "less than or equal to 2"),
        ("/topk 1.5", "valid integer"),
        ("/topp 0", "greater than 0"),
        ("/presencepenalty 3", "Allowed: a number from -2.0 up to 2.0"),
        ("/frequencypenalty -2.5", "greater than or equal to -2"),
        ("/seed banana", "Allowed: a whole number from 0 up to 4294967295 or one of random"),
        ("/maxtokens 5000", "Allowed: 1 to 1023"),
        ("/temp 0.5 0.7", "unexpected: '0.7'"),
        ("/ask", "/ask needs question"),
        ("/nosuchcommand", "unknown command /nosuchcommand"),
    ],
)
async def test_bad_arguments_say_what_is_wrong_and_change_nothing(
    bot: Bot, command: str, expected: str
) -> None:
    reply = await say(bot, command)
    assert reply.text.startswith("⚠")
    assert expected in reply.text
    settings = await say(bot, "/settings")
    assert "*" not in settings.text.split("\n", 1)[1]  # nothing marked as changed


async def test_a_huge_persona_is_refused_with_the_limit(bot: Bot) -> None:
    reply = await say(bot, "/persona " + "x" * 50_000)
    assert "at most 4000 characters" in reply.text
    assert "50000 characters" in reply.text
    assert "You are a helpful assistant." in (await say(bot, "/persona")).text


async def test_settings_are_per_chat(bot: Bot) -> None:
    assert "set to 0.3" in (await say(bot, "/temp 0.3", chat="a")).text
    assert (await say(bot, "/temp", chat="a")).text == "temperature is 0.3 (default 0.7)"
    assert (await say(bot, "/temp", chat="b")).text == "temperature is 0.7 (default 0.7)"
    await say(bot, "/persona You are a pirate.", chat="b")
    assert "helpful assistant" in (await say(bot, "/persona", chat="a")).text
    assert "pirate" in (await say(bot, "/persona", chat="b")).text
    assert "reset to the default" in (await say(bot, "/persona reset", chat="b")).text


async def test_settings_lists_every_value_with_its_default(bot: Bot) -> None:
    await say(bot, "/topk 5")
    await say(bot, "/seed 7")
    text = (await say(bot, "/settings")).text
    for name in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "max_tokens"):  # fmt: skip
        assert f" {name}: " in text
    assert "* top_k: 5  (default 40)" in text
    assert "* seed: 7  (default random)" in text


async def test_model_reads_the_gguf_metadata(bot: Bot) -> None:
    text = (await say(bot, "/model")).text
    assert "parameters: 134.5M" in text
    assert "quantization: Q4_1" in text
    assert "context length: 2048 tokens (trained for 8192)" in text
    assert "file size: 98.4 MB" in text


async def test_help_lists_builtins_and_plugins(bot: Bot) -> None:
    text = (await say(bot, "/help")).text
    for usage in ("/ask <question…>", "/temp [value]", "/seed [value]", "/persona [text…]"):
        assert usage in text
    for name in ("/context", "/model", "/reset", "/settings", "/help"):
        assert name in text
    # The workshop concepts are listed together, after the other commands.
    general, concepts = text.split("See what the model does (the workshop concepts):")
    for name in ("/probs", "/tokens", "/context", "/model", "/retry", "/stats", "/examples"):
        assert f"  {name}" in concepts
        assert f"  {name}" not in general
    assert "/reset" in general


async def test_context_accounts_for_the_whole_window(bot: Bot) -> None:
    await say(bot, "Hello there!")
    text = (await say(bot, "/context")).text
    numbers = {}
    for line in text.splitlines()[1:10]:
        label, value = line.split(":", 1)
        numbers[label.strip()] = int(value.split()[0])
    assert sum(numbers.values()) == 2048
    assert numbers["reply reserve"] == 256
    assert numbers["tools"] == 0  # the bundled model is given no tools on its own
    assert numbers["memory"] == 0  # recall is off in this chat (the tests' default)
    assert "Retrieval: keywords only ([retrieval] vectors = false)" in text
    assert "(2 messages)" in text
    assert "no longer seen by the model: 0" in text


async def test_reset_forgets_history_but_keeps_settings(bot: Bot) -> None:
    await say(bot, "/temp 0.1")
    await say(bot, "Remember the word banana.")
    assert "(2 messages forgotten)" in (await say(bot, "/reset")).text
    assert "(0 messages)" in (await say(bot, "/context")).text
    assert "0.1" in (await say(bot, "/temp")).text


async def test_presence_and_frequency_penalties_reach_the_model(make_config: MakeConfig) -> None:
    greedy = {"temperature": 0.0, "max_tokens": 60, "seed": 1, "repeat_penalty": 1.0}
    async with build_bot(make_config(defaults=greedy), base_dir=REPO) as bot:
        question = "List the days of the week, twice."
        plain = (await say(bot, question, chat="plain")).text
        assert plain == (await say(bot, question, chat="again")).text  # greedy: repeatable
        for command, chat in (("/presencepenalty 2", "presence"), ("/frequencypenalty 2", "freq")):
            assert "set to 2 (was 0)" in (await say(bot, command, chat=chat)).text
            assert (await say(bot, question, chat=chat)).text != plain
