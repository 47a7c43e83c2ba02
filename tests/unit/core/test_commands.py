"""Command arguments on the scripted backend (the fast tier): every built-in setting command
validates its argument and answers with what is allowed, changing nothing on a bad one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.commands import CommandError
from tests.conftest import MakeConfig, say


@pytest.fixture
async def bot(make_config: MakeConfig) -> AsyncIterator[Bot]:
    config = make_config(service={"rate_limit_per_minute": 0})
    async with build_bot(config, backends={"local": ScriptedBackend("local")}) as instance:
        yield instance


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("/temp 2.5", "0"),
        ("/temp warm", "number"),
        ("/topk -1", "0"),
        ("/topp 0", "1"),
        ("/seed -3", "random"),
        ("/maxtokens 0", "1"),
        ("/maxtokens 4000", "Allowed: 1 to 2047"),
    ],
)
async def test_a_bad_setting_says_what_is_allowed_and_changes_nothing(
    bot: Bot, command: str, allowed: str
) -> None:
    before = (await say(bot, "/settings")).text
    answer = (await say(bot, command)).text
    assert answer.startswith("⚠")
    assert allowed in answer
    assert (await say(bot, "/settings")).text == before


async def test_parse_takes_typed_values_and_refuses_extra_words(bot: Bot) -> None:
    temp = bot.registry.get("temp")
    assert temp is not None
    assert temp.parse("0.5") == {"value": 0.5}
    assert temp.parse("") == {}  # no value: the command shows the setting
    with pytest.raises(CommandError):
        temp.parse("0.5 0.6")
