"""1. Overhead: a reply through the whole of botkit against raw llama-cpp-python.

Same process, same model file, same prompt and settings, runs alternating. botkit's path is
router → conversation → scheduler → backend thread → reply stream → store commit.
"""

from __future__ import annotations

import time

from llama_cpp import Llama

from bench.common import Result, TimingTarget, incoming, median, started_bot
from botkit.backends.model_files import bundled_model_path

PERSONA = "You are a helpful assistant."
QUESTION = "Write a short story about a robot who learns to paint."
SETTINGS = {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1}


async def run(rounds: int = 10, max_tokens: int = 200) -> list[Result]:
    """Median tokens/s and time to first token of both paths."""
    raw = Llama(str(bundled_model_path()), n_ctx=2048, verbose=False)
    ours_tps: list[float] = []
    ours_ttft: list[float] = []
    raw_tps: list[float] = []
    raw_ttft: list[float] = []
    defaults = {**SETTINGS, "persona": PERSONA, "max_tokens": max_tokens, "seed": 1234}
    async with started_bot(defaults=defaults) as bot:
        for index in range(rounds + 1):  # the first round of each warms up and is not counted
            target = TimingTarget()
            ctx = await bot.router.context(incoming(QUESTION, f"overhead-{index}"), target)
            start = time.perf_counter()
            reply = await bot.conversation.respond(ctx, QUESTION)
            end = time.perf_counter()
            assert target.first is not None
            assert reply.usage is not None
            if index:
                ours_ttft.append(target.first - start)
                ours_tps.append((reply.usage.completion_tokens - 1) / (end - target.first))

            start = time.perf_counter()
            first: float | None = None
            count = 0
            for part in raw.create_chat_completion(
                [{"role": "system", "content": PERSONA}, {"role": "user", "content": QUESTION}],
                stream=True, max_tokens=max_tokens, seed=1234, temperature=SETTINGS["temperature"],
                top_k=int(SETTINGS["top_k"]), top_p=SETTINGS["top_p"], min_p=SETTINGS["min_p"],
                repeat_penalty=SETTINGS["repeat_penalty"],
            ):  # fmt: skip
                if part["choices"][0]["delta"].get("content"):  # type: ignore[index,union-attr]
                    count += 1
                    if first is None:
                        first = time.perf_counter()
            end = time.perf_counter()
            assert first is not None
            if index:
                raw_ttft.append(first - start)
                raw_tps.append((count - 1) / (end - first))
    raw.close()
    tps, base_tps = median(ours_tps), median(raw_tps)
    ttft, base_ttft = median(ours_ttft), median(raw_ttft)
    return [
        Result("reply speed (tokens/s)", tps, base_tps, "tok/s", tps / base_tps,
               "≥ 0.97", tps / base_tps >= 0.97),
        Result("time to first token (speed ratio)", ttft * 1000, base_ttft * 1000, "ms",
               base_ttft / ttft, "≥ 0.97", base_ttft / ttft >= 0.97,
               "ratio = raw TTFT / botkit TTFT"),
    ]  # fmt: skip
