"""4. Checkpoints: what saving a growing reply costs the reply's speed.

The same bot code with two configs, alternating reply by reply on the same prompt (random
seeds: a fixed seed would re-evaluate each reply after it, on the other bot's time):
checkpoints every 0.1 s (the fastest the config allows, twenty times the default) against
every 60 s (none within a reply). The figure is tokens/s of the two, median over the rounds;
the checkpoint transaction itself is timed too, and its share of the default 2-s interval is
the cost at the default setting.
"""

from __future__ import annotations

import time

from bench.common import Result, TimingTarget, incoming, median, started_bot
from botkit.core.app import Bot
from botkit.core.settings import RANDOM_SEED

PERSONA = "You are a helpful assistant."
QUESTION = "Write a long story about a lighthouse keeper and a storm."
SETTINGS = {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}
DEFAULT_INTERVAL = 2.0


async def _speed(bot: Bot, chat: str) -> float:
    target = TimingTarget()
    ctx = await bot.router.context(incoming(QUESTION, chat), target)
    reply = await bot.conversation.respond(ctx, QUESTION)
    end = time.perf_counter()
    assert target.first is not None
    assert reply.usage is not None
    return (reply.usage.completion_tokens - 1) / (end - target.first)


async def _checkpoint_cost(bot: Bot, rounds: int = 200) -> float:
    """Median seconds of one checkpoint transaction (a growing reply of ~1,000 characters)."""
    ctx = await bot.router.context(incoming(QUESTION, "checkpoint-cost"), TimingTarget())
    _, reply_id = await bot.repo.begin_turn(ctx.chat.id, None)
    times = []
    text = ""
    for index in range(rounds):
        text += f"word{index} "
        start = time.perf_counter()
        await bot.repo.checkpoint(reply_id, text, "12345")
        times.append(time.perf_counter() - start)
    return median(times)


async def run(rounds: int = 8, max_tokens: int = 300) -> list[Result]:
    """Reply speed with frequent checkpoints against none; the cost of one checkpoint."""
    defaults = {**SETTINGS, "persona": PERSONA, "max_tokens": max_tokens, "seed": RANDOM_SEED}
    often: list[float] = []
    never: list[float] = []
    async with (
        started_bot(defaults=defaults, storage={"checkpoint_interval": 0.1}) as frequent,
        started_bot(defaults=defaults, storage={"checkpoint_interval": 60.0}) as rare,
    ):
        for index in range(rounds + 1):  # the first round of each warms up and is not counted
            for bot, speeds in ((frequent, often), (rare, never)):
                speed = await _speed(bot, f"checkpoint-{index}")
                if index:
                    speeds.append(speed)
        cost = await _checkpoint_cost(frequent)
    tps, base = median(often), median(never)
    share = cost / DEFAULT_INTERVAL
    return [
        Result("reply speed, checkpoint every 0.1 s vs none", tps, base, "tok/s", tps / base,
               "≥ 0.99", tps / base >= 0.99, "20× the default rate"),
        Result("checkpoint transaction (ms)", cost * 1000, DEFAULT_INTERVAL * 1000, "ms",
               share, "≤ 0.01", share <= 0.01, "ratio = its share of the 2-s default interval"),
    ]  # fmt: skip
