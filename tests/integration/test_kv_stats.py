"""/stats and /context show the KV cache at work on the real model: a cold question, a warm
follow-up, a chat whose saved state comes back, and figures that survive a restart."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from botkit.compose import build_bot
from botkit.core.app import Bot
from tests.conftest import REPO, MakeConfig, say

LONG = (
    "Here is a long question about the history of bread. " * 12
    + "In two sentences: why did people start baking bread?"
)


@pytest.fixture
async def single(make_config: MakeConfig) -> AsyncIterator[Bot]:
    """The bundled model on one context (the batched path: tests/integration/test_batching)."""
    async with build_bot(make_config(backends={"local": {"parallel": 1}}), base_dir=REPO) as bot:
        yield bot


def prompt_figures(stats: str) -> tuple[int, int, int]:
    """(prompt tokens, reused from the cache, evaluated) from /stats."""
    found = re.search(
        r"prompt: (\d+) tokens: (\d+) reused from the KV cache, (\d+) evaluated", stats
    )
    assert found, stats
    total, reused, evaluated = (int(g) for g in found.groups())
    assert total == reused + evaluated
    return total, reused, evaluated


def seconds(stats: str, label: str) -> float:
    found = re.search(rf"{label}: ([\d.]+) s", stats)
    assert found, stats
    return float(found[1])


async def test_a_warm_follow_up_reuses_the_cache_and_a_returning_chat_is_restored(
    single: Bot,
) -> None:
    bot = single
    assert "No reply in this chat yet" in (await say(bot, "/stats")).text
    await say(bot, "/maxtokens 32")
    await say(bot, LONG)
    cold = (await say(bot, "/stats")).text
    total, reused, evaluated = prompt_figures(cold)
    assert reused == 0
    assert evaluated > 150
    assert "KV cache: cold" in cold
    assert seconds(cold, "prefill") > 0
    assert seconds(cold, "time to first token") >= seconds(cold, "prefill")
    assert re.search(r"reply: \d+ tokens at [\d.]+ tokens/s", cold)

    await say(bot, "And who baked the first one?")
    warm = (await say(bot, "/stats")).text
    warm_total, warm_reused, warm_evaluated = prompt_figures(warm)
    assert warm_reused > total  # the whole first turn, reply included, came from the cache
    assert warm_evaluated < 40
    assert "KV cache: reused what the model's live context already held" in warm
    # The warm prefill evaluates a few tokens instead of the whole history.
    assert seconds(warm, "prefill") < seconds(cold, "prefill")

    await say(bot, "Hello from another chat.", chat="b")
    await say(bot, "One more question: what is yeast?")
    back = (await say(bot, "/stats")).text
    assert prompt_figures(back)[1] > warm_total
    assert "KV cache: restored from this chat's saved state" in back


async def test_context_names_the_cached_part_of_the_window(single: Bot) -> None:
    bot = single
    await say(bot, "/maxtokens 32")
    await say(bot, "Tell me a fact about owls.")
    text = (await say(bot, "/context")).text
    found = re.search(r"KV cache: (\d+) of these (\d+) prompt tokens are cached", text)
    assert found, text
    cached, prompt = int(found[1]), int(found[2])
    assert prompt - 4 <= cached <= prompt + 1  # all but the template's last framing tokens
    # Another chat's turn does not empty this chat's cache: its state was saved.
    await say(bot, "Something else entirely.", chat="b")
    again = re.search(r"KV cache: (\d+) of", (await say(bot, "/context")).text)
    assert again
    assert int(again[1]) == cached


async def test_the_last_replys_figures_survive_a_restart(make_config: MakeConfig) -> None:
    config = make_config(defaults={"max_tokens": 24})
    async with build_bot(config, base_dir=REPO) as bot:
        await say(bot, "Name a colour.")
        before = (await say(bot, "/stats")).text
    async with build_bot(config, base_dir=REPO) as bot:
        assert (await say(bot, "/stats")).text == before
