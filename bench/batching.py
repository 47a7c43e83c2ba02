"""5. Many chats at once: continuous batching (parallel = 8) against one reply at a time.

The same bot code with two configs, on the bundled model, in one run: aggregate tokens/s with
1, 2, 4 and 8 chats generating at once (each a different question, greedy, 64 tokens), the
last chat's time to first token with 8 at once, and the resident memory each needs (the
batched context holds 8 × n_ctx of KV cache). One replies-at-a-time bot is measured first,
then the batched one, so their memory does not mix.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import Result, TimingTarget, incoming, started_bot
from bench.memory import _rss
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.core.app import Bot

QUESTIONS = [
    "Name three fruits.", "What is the capital of France?", "Say hello in French.",
    "Name a color.", "Why is the sky blue?", "What is a robot?", "Describe a cat.",
    "What is rain?",
]  # fmt: skip
SLOTS = 8
COUNTS = (1, 2, 4, 8)
# Greedy with a random seed: a fixed seed would make the one-at-a-time path re-evaluate every
# reply after it (for exact repeats), which is not what this compares.
DEFAULTS = {"temperature": 0.0, "max_tokens": 64, "seed": -1, "repeat_penalty": 1.1}


async def _round(bot: Bot, chats: int, tag: str) -> tuple[float, float, list[str]]:
    """(aggregate tokens/s, the last-served chat's time to first token, the replies) for
    chats at once."""
    targets = [TimingTarget() for _ in range(chats)]
    contexts = [
        await bot.router.context(incoming(QUESTIONS[i], f"{tag}-{i}"), targets[i])
        for i in range(chats)
    ]
    start = time.perf_counter()
    replies = await asyncio.gather(
        *(bot.conversation.respond(ctx, QUESTIONS[i]) for i, ctx in enumerate(contexts))
    )
    elapsed = time.perf_counter() - start
    tokens = sum(r.usage.completion_tokens for r in replies if r.usage is not None)
    last_first = max(t.first or start for t in targets) - start
    return tokens / elapsed, last_first, [r.text for r in replies]


async def _measure(parallel: int) -> tuple[dict[int, float], float, int, int, int, int]:
    """Rates by chat count, the 8th chat's TTFT, RSS, KV bytes, and how many of the 8 greedy
    replies generated together equal the same questions answered one by one (and of 8 seeded
    ones, batched only)."""
    sections: dict[str, Any] = {"backends": {"local": {"parallel": parallel}}}
    async with started_bot(defaults=DEFAULTS, **sections) as bot:
        backend = bot.backends["local"]
        assert isinstance(backend, LlamaCppBackend)
        await _round(bot, 1, f"warm-{parallel}")  # the first reply pays one-time costs
        rates: dict[int, float] = {}
        ttft = 0.0
        together: list[str] = []
        for chats in COUNTS:
            rates[chats], last, texts = await _round(bot, chats, f"p{parallel}-{chats}")
            if chats == SLOTS:
                ttft, together = last, texts
        alone = []
        for i, question in enumerate(QUESTIONS[:SLOTS]):
            ctx = await bot.router.context(incoming(question, f"alone-{i}"), TimingTarget())
            alone.append((await bot.conversation.respond(ctx, question)).text)
        same = sum(a == b for a, b in zip(alone, together, strict=True))
        info = await backend.info()
        kv = (info.kv_bytes_per_token or 0) * info.context_length * parallel
        rss = _rss()
        seeded = await _seeded_same(bot) if parallel > 1 else SLOTS
        return rates, ttft, rss, kv, same, seeded


async def _seeded_same(bot: Bot) -> int:
    """How many of 8 seeded replies (seed 1234, temperature 0.8) generated at once equal the
    same questions answered one by one."""
    for tag in ("seeded-together", "seeded-alone"):
        for i in range(SLOTS):
            chat = await bot.repo.chat(incoming("", f"{tag}-{i}").chat)
            await bot.repo.set_setting(chat.id, "seed", 1234)
            await bot.repo.set_setting(chat.id, "temperature", 0.8)
    _, _, together = await _round(bot, SLOTS, "seeded-together")
    alone = []
    for i, question in enumerate(QUESTIONS[:SLOTS]):
        ctx = await bot.router.context(incoming(question, f"seeded-alone-{i}"), TimingTarget())
        alone.append((await bot.conversation.respond(ctx, question)).text)
    return sum(a == b for a, b in zip(alone, together, strict=True))


async def run() -> list[Result]:
    """Aggregate speed at 1-8 chats, the 8th chat's wait, and memory, both ways."""
    one, one_ttft, one_rss, one_kv, one_same, _ = await _measure(1)
    many, many_ttft, many_rss, many_kv, many_same, seeded = await _measure(SLOTS)
    results = []
    for chats in COUNTS:
        ratio = many[chats] / one[chats]
        goal, passed = ("≥ 1.4", ratio >= 1.4) if chats == SLOTS else ("≥ 0.97", ratio >= 0.97)
        if chats not in (1, SLOTS):
            goal, passed = "report", True
        results.append(
            Result(f"tokens/s, {chats} chat(s) at once, parallel {SLOTS} vs 1", many[chats],
                   one[chats], "tok/s", ratio, goal, passed)
        )  # fmt: skip
    results += [
        Result(f"time to first token of the {SLOTS}th chat", many_ttft * 1000,
               one_ttft * 1000, "ms", many_ttft / one_ttft, "≤ 0.25", many_ttft <= one_ttft / 4),
        Result(f"resident memory, parallel {SLOTS} vs 1", many_rss / 1e6, one_rss / 1e6, "MB",
               many_rss / one_rss, "report", True,
               f"KV for all slots {many_kv / 1e6:.0f} MB vs {one_kv / 1e6:.0f} MB"),
        Result(f"greedy replies the same together as alone (of {SLOTS})", many_same, one_same,
               "", many_same / max(1, one_same), "report", True,
               "the same prompt may decode differently beside other chats: see README"),
        Result(f"seeded replies the same together as alone (of {SLOTS})", seeded, SLOTS, "",
               seeded / SLOTS, "report", True, "seed 1234, temperature 0.8"),
    ]  # fmt: skip
    return results
