"""What the Ollama and OpenAI emulators embed with, and how they misbehave on demand.

The vectors are real: the bundled all-MiniLM-L6-v2 (converted to GGUF by botkit, checked
against a numpy forward pass in test_embedders) run by llama.cpp on a thread, so a test can
check that the same text gets the same vector through every embedder.

`EmbedFault` names the ways a server can answer wrongly, each seen in the wild or allowed by
the transport: a 200 whose body is not JSON ("garbage"), no answer at all ("hang"), 500,
vectors of another length than before ("wrong_dims": a model swapped behind the name), NaN in
a vector ("nan": a broken model; Python's json writes the bare NaN token that Go's and
JavaScript's parsers refuse but Python's accepts), one vector too few ("wrong_count") and
empty vectors ("empty").
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from botkit.retrieval.minilm_gguf import default_gguf

__all__ = ["EmbedFault", "EmbeddingModel", "misbehave"]

EmbedFault = Literal["garbage", "hang", "500", "wrong_dims", "nan", "wrong_count", "empty"]


@dataclass
class EmbeddingModel:
    """The real model, loaded on first use; vectors as the server computes them (unnormalised:
    each emulator normalises where its service does)."""

    _llama: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def vectors(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """One vector per text, and the tokens read."""
        async with self._lock:
            if self._llama is None:
                from llama_cpp import Llama

                path = await asyncio.to_thread(default_gguf)
                self._llama = await asyncio.to_thread(
                    Llama, str(path), embedding=True, n_ctx=0, verbose=False
                )
            if not texts:
                return [], 0
            rows, tokens = await asyncio.to_thread(self._llama.embed, texts, return_count=True)
            return [list(map(float, r)) for r in rows], int(tokens)

    def close(self) -> None:
        """Free the model."""
        if self._llama is not None:
            self._llama.close()
            self._llama = None


def normalised(row: list[float]) -> list[float]:
    """row / |row| (Ollama's and OpenAI's vectors have length 1)."""
    norm = math.sqrt(sum(v * v for v in row)) or 1.0
    return [v / norm for v in row]


def misbehave(rows: list[list[float]], fault: EmbedFault | None) -> list[list[float]]:
    """rows as a faulty server returns them (the faults that still answer 200 with JSON)."""
    if fault == "wrong_dims":
        return [r[: len(r) // 2] for r in rows]
    if fault == "nan":
        return [[math.nan, *r[1:]] for r in rows]
    if fault == "wrong_count":
        return rows[:-1]
    if fault == "empty":
        return [[] for _ in rows]
    return rows
