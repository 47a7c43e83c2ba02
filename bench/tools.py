"""Tools: what the in-process tool-call grammar costs in generation speed.

Same process, same model and prompt, runs alternating: a forced call constrained by the
grammar built from the tool's schema (its tokens/s after the first token), against free
generation of the same number of tokens from the same prompt.

The grammar is checked against every candidate token at each step (llama.cpp's grammar
sampler over the whole 49,152-token vocabulary), a fixed cost per token; on the bundled
135M model, whose own step is a few milliseconds, that cost weighs far more than on the
models people run, so the goal is a floor (half the free speed), not parity.

Tool round overhead: a whole turn with one forced call (`/tool time …` through the router:
the call's row and its result's written ahead, the tool run, the result stored, the answer
generated and stored) against the model's own time in it (the two generations, timed around
the backend's stream), in the same run. What is left is botkit's: the rows, the tool's bounds,
the reply's updates (the tool's own seconds are taken out too).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from bench.common import Result, TimingTarget, incoming, median, started_bot
from botkit.backends.base import Chunk, GenerationParams, Message
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.config import LlamaCppConfig
from botkit.tools.spec import ToolSpec

PROMPT: list[Message] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Describe a new employee: name, town, street and a long bio."},
]
EMPLOYEE = ToolSpec(
    "add_employee",
    "Add an employee record",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 18, "maximum": 70},
            "address": {
                "type": "object",
                "properties": {"town": {"type": "string"}, "street": {"type": "string"}},
                "required": ["town", "street"],
            },
            "bio": {"type": "string"},
        },
        "required": ["name", "age", "address", "bio"],
    },
)
GOAL = 0.5
ROUND_GOAL = 0.1  # botkit's part of a tool round, as a share of the model's time


async def run(rounds: int = 6, max_tokens: int = 160) -> list[Result]:
    """Median tokens/s of grammar-constrained calls and of free text of the same length."""
    backend = LlamaCppBackend("bench", LlamaCppConfig(n_ctx=1024, parallel=1))
    await backend.start()
    on: list[float] = []
    off: list[float] = []
    lengths: list[int] = []
    try:
        for index in range(rounds + 1):  # the first round warms up and is not counted
            params = GenerationParams(temperature=0.7, max_tokens=max_tokens, seed=index + 1)
            key = f"tools-{index}"
            try:
                chunks = [c async for c in backend.stream(PROMPT, params, cache_key=key,
                          tools=[EMPLOYEE], tool_choice=EMPLOYEE.name)]  # fmt: skip
                usage = chunks[-1].usage
            except Exception:  # a call cut at max_tokens: its speed still counts
                usage = None
            if usage is None or usage.tokens_per_second is None:
                continue
            same = params.model_copy(update={"max_tokens": usage.completion_tokens})
            free = [c async for c in backend.stream(PROMPT, same, cache_key=key + "-free")]
            free_usage = free[-1].usage
            if free_usage is None or free_usage.tokens_per_second is None or not index:
                continue
            on.append(usage.tokens_per_second)
            off.append(free_usage.tokens_per_second)
            lengths.append(free_usage.completion_tokens)
    finally:
        await backend.close()
    overhead, model_time = await _round_overhead(rounds)
    constrained, baseline = median(on), median(off)
    ratio = constrained / baseline
    return [
        Result("tool-call grammar: generation speed", constrained, baseline, "tok/s", ratio,
               f"≥ {GOAL}", ratio >= GOAL,
               f"{len(on)} rounds, median {median([float(n) for n in lengths]):.0f} tokens; "
               "baseline = free text of the same length"),
        Result("tool round: botkit's time vs the model's", overhead * 1e3, model_time * 1e3,
               "ms", overhead / model_time, f"≤ {ROUND_GOAL}", overhead / model_time <= ROUND_GOAL,
               "a forced /tool call, its result and the answer; medians of "
               f"{rounds}; baseline = the two generations"),
    ]  # fmt: skip


async def _round_overhead(rounds: int) -> tuple[float, float]:
    """Median seconds of a tool turn outside the model (and the tool), and in the model."""
    async with started_bot(defaults={"temperature": 0.0, "max_tokens": 32, "memory": False},
                           retrieval={"vectors": False}) as bot:  # fmt: skip
        backend = bot.backends["local"]
        real = backend.stream
        spent = [0.0]

        async def timed(*args: Any, **kw: Any) -> AsyncIterator[Chunk]:
            started = time.perf_counter()
            try:
                async for chunk in real(*args, **kw):
                    yield chunk
            finally:
                spent[0] += time.perf_counter() - started

        backend.stream = timed  # type: ignore[method-assign]
        outside: list[float] = []
        inside: list[float] = []
        for index in range(rounds + 1):  # the first warms up
            spent[0] = 0.0
            started = time.perf_counter()
            chat = f"round-{index}"
            await bot.router.handle(incoming("/tool time What day is it?", chat), TimingTarget())
            wall = time.perf_counter() - started
            stats = await bot.repo.last_stats((await bot.repo.chat(incoming("", chat).chat)).id)
            tool_seconds = float((stats or {}).get("tool_seconds", 0.0))
            if index:
                inside.append(spent[0])
                outside.append(wall - spent[0] - tool_seconds)
    return median(outside), median(inside)
