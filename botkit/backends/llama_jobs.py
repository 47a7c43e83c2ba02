"""What the batch engine works on: a job (one reply, a settle, a logits request), a slot (one
chat's sequence in the batched context), and a job's sampler chain."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from llama_cpp import _internals

from botkit.backends.base import Chunk, GenerationParams
from botkit.backends.llama_worker import Emit

__all__ = ["BatchJob", "Slot", "discard", "sampler_chain"]

# llama-cpp-python's thin wrappers (sampler chain) are untyped.
internals: Any = _internals

# The repeat, presence and frequency penalties look at the reply's own last 64 tokens, never
# the prompt: the question's words are what a reply should use (as llama-cpp-python's
# Llama.generate and OpenAI's presence/frequency penalties; llama-server also feeds the prompt).
_PENALTY_LAST_N = 64


@dataclass
class BatchJob:
    """One reply to generate; emit receives its chunks, then None."""

    prompt: list[int]
    params: GenerationParams
    cache_key: str
    stop: threading.Event
    emit: Emit
    # Filled in by the engine.
    slot: int = -1
    fed: int = 0  # prompt tokens in the slot's sequence
    reused: int = 0
    canonical: bool = False  # its reused prefix was all prompt evaluated in canonical shape
    completion: list[int] = field(default_factory=list)
    pending: int | None = None  # sampled, not yet decoded
    sampler: Any = None
    decoder: Any = None
    settle: bool = False  # re-evaluates a seeded reply canonically; nothing is sampled
    # Prefills the prompt and keeps the next token's raw logits in `logits` (for /probs);
    # nothing is sampled.
    logits_only: bool = False
    logits: Any = None
    # Timings for /stats (time.perf_counter()): submitted, took a slot, prompt evaluated,
    # first token; and whether the chat's saved sequence state was loaded for it.
    submitted: float = field(default_factory=time.perf_counter)
    started: float = 0.0
    prefilled: float | None = None
    first: float | None = None
    restored: bool = False


def discard(_item: Chunk | BaseException | None) -> None:
    """Where a settle job's (empty) output goes."""


@dataclass
class Slot:
    tokens: list[int] = field(default_factory=list)  # what the sequence holds, in order
    canonical: int = 0  # leading tokens evaluated as prompt (reusable by a seeded chat)
    key: str | None = None
    job: BatchJob | None = None
    used: int = 0  # when it last started a job (for choosing which free slot to reuse)


def sampler_chain(params: GenerationParams, n_vocab: int) -> Any:
    """The chat's own chain, in the order llama-cpp-python's Llama builds it."""
    sampler = internals.LlamaSampler()
    sampler.add_penalties(
        n_vocab=n_vocab,
        penalty_last_n=_PENALTY_LAST_N,
        penalty_repeat=params.repeat_penalty,
        penalty_freq=params.frequency_penalty,
        penalty_present=params.presence_penalty,
    )
    if params.temperature == 0:
        sampler.add_greedy()
    else:
        sampler.add_top_k(params.top_k)
        sampler.add_top_p(params.top_p, 1)
        sampler.add_min_p(params.min_p, 1)
        sampler.add_temp(params.temperature)
        sampler.add_dist(params.seed)
    return sampler
