"""Tools: what the in-process tool-call grammar costs in generation speed.

Same process, same model and prompt, runs alternating: a forced call constrained by the
grammar built from the tool's schema (its tokens/s after the first token), against free
generation of the same number of tokens from the same prompt.

The grammar is checked against every candidate token at each step (llama.cpp's grammar
sampler over the whole 49,152-token vocabulary), a fixed cost per token; on the bundled
135M model, whose own step is a few milliseconds, that cost weighs far more than on the
models people run, so the goal is a floor (half the free speed), not parity.

TODO(lead): "tool round overhead vs the model's time" (a call, its result and the answer
through the whole turn loop against the model's own prefill and generation seconds) belongs
here once the turn loop exists.
"""

from __future__ import annotations

from bench.common import Result, median
from botkit.backends.base import GenerationParams, Message
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
    constrained, baseline = median(on), median(off)
    ratio = constrained / baseline
    return [
        Result("tool-call grammar: generation speed", constrained, baseline, "tok/s", ratio,
               f"≥ {GOAL}", ratio >= GOAL,
               f"{len(on)} rounds, median {median([float(n) for n in lengths]):.0f} tokens; "
               "baseline = free text of the same length"),
    ]  # fmt: skip
