"""The explain plugin on the real model: /probs against the raw logits, /tokens, /retry."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from botkit.adapters.memory import MemoryTarget
from botkit.backends.base import TokenInspector
from botkit.core.app import Bot
from botkit.core.sampling import softmax
from botkit.plugins.charts import CONTEXT_SIZE, PROBS_SIZE
from tests.conftest import incoming, say

PROMPT = "Yesterday I went to the cinema to see a"


class ImageTarget(MemoryTarget):
    """A target that can show pictures, like Discord and Telegram."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[bytes] = []

    async def send_image(self, png: bytes, text: str) -> None:
        self.images.append(png)
        await self.send(text)


def rows(text: str) -> list[tuple[str, float, float]]:
    """(token, raw %, after %) from a /probs table."""
    found = re.findall(r"^\s*\d+\s+(\S+)\s+([\d.]+)%\s+([\d.]+)%", text, re.MULTILINE)
    return [(token, float(raw), float(after)) for token, raw, after in found]


async def probs(bot: Bot, args: str) -> list[tuple[str, float, float]]:
    table = rows((await say(bot, f"/probs {args}")).text)
    assert len(table) == 10
    return table


async def test_probabilities_are_the_models_and_add_up(bot: Bot) -> None:
    table = await probs(bot, PROMPT)
    raws = [raw for _, raw, _ in table]
    assert raws == sorted(raws, reverse=True)
    # Each shown value is rounded to 0.1 %, so the ten may add up to 0.05 % each above 100.
    assert sum(raws) <= 100 + 0.05 * len(table)
    assert sum(after for _, _, after in table) <= 100 + 0.05 * len(table)
    # The same numbers, computed here from the raw logits.
    backend = bot.backends["local"]
    assert isinstance(backend, TokenInspector)
    logits = await backend.next_token_logits(
        [{"role": "system", "content": "You are a helpful assistant."}], PROMPT
    )
    expected = np.sort(softmax(logits))[::-1][:10] * 100
    assert raws == pytest.approx(list(expected), abs=0.051)


async def test_low_temperature_makes_the_top_token_likelier(bot: Bot) -> None:
    cold = await probs(bot, f"{PROMPT} temperature=0.3")
    warm = await probs(bot, f"{PROMPT} temperature=1.0")
    assert cold[0][0] == warm[0][0]
    assert cold[0][2] > warm[0][2]


async def test_top_k_two_leaves_exactly_two_tokens(bot: Bot) -> None:
    table = await probs(bot, f"{PROMPT} top_k=2 top_p=1 temperature=1")
    survivors = [t for t in table if t[2] > 0]
    assert len(survivors) == 2
    raw_share = table[0][1] / (table[0][1] + table[1][1]) * 100
    assert survivors[0][2] == pytest.approx(raw_share, abs=0.15)


async def test_top_p_keeps_the_smallest_prefix_reaching_p(bot: Bot) -> None:
    table = await probs(bot, f"{PROMPT} top_k=0 top_p=0.7 temperature=1")
    kept = [t for t in table if t[2] > 0]
    raws = [t[1] for t in table]
    # From the raw numbers: keep tokens until their cumulative probability reaches 70 %.
    cumulative, expected = 0.0, 0
    while cumulative < 70.0:
        cumulative += raws[expected]
        expected += 1
    assert len(kept) == expected
    assert sum(t[2] for t in kept) == pytest.approx(100, abs=0.1)


async def test_probs_and_context_send_charts_where_images_work(bot: Bot) -> None:
    target = ImageTarget()
    await bot.router.handle(incoming(f"/probs {PROMPT}"), target)
    await bot.router.handle(incoming("/context"), target)
    sizes = [Image.open(io.BytesIO(png)).size for png in target.images]
    assert sizes == [PROBS_SIZE, CONTEXT_SIZE]
    assert len(rows(target.messages[0])) == 10  # the numbers also come as text
    assert "Context window: 2048 tokens" in target.messages[1]


async def test_tokens_shows_pieces_ids_and_count(bot: Bot) -> None:
    text = (await say(bot, "/tokens Hello world, tokens!")).text
    lines = text.splitlines()
    assert lines[0] == "5 token(s), 20 characters:"
    assert [line.split()[1] for line in lines[1:]] == ["Hello", "␣world", ",", "␣tokens", "!"]


async def test_retry_with_the_same_seed_repeats_and_a_new_seed_does_not(bot: Bot) -> None:
    await say(bot, "/seed 42")
    await say(bot, "/temp 1.0")
    first = (await say(bot, "Invent a name for a dragon.")).messages[0]
    again = await say(bot, "/retry")
    assert again.messages[0] == first
    assert again.messages[1] == "(seed 42: the same seed)"
    other = await say(bot, "/retry 7")
    assert other.messages[1] == "(seed 7: a new seed)"
    assert other.messages[0] != first
    assert "(2 messages)" in (await say(bot, "/context")).text  # the turn was replaced


async def test_retry_without_a_reply_says_so(bot: Bot) -> None:
    assert "no reply to retry" in (await say(bot, "/retry")).text


async def test_model_shows_memory_and_precisions(bot: Bot) -> None:
    text = (await say(bot, "/model")).text
    assert "KV cache 47.2 MB for a full 2048-token window (22 KiB per token)" in text
    assert "fp32 538.1 MB, fp16 269.0 MB, int8 134.5 MB" in text
