"""What the batch engine works on: a job (one reply, a settle, a logits request), a slot (one
chat's sequence in the batched context), and a job's sampler chain (with a tool-call grammar:
the whole reply's for a forced call, or switched in by a CallWatch once an "auto" reply
starts a call)."""

from __future__ import annotations

import codecs
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
from llama_cpp import _internals

from botkit.backends.base import BackendError, Chunk, GenerationParams
from botkit.backends.hermes import CALL_OPEN
from botkit.backends.llama_worker import Emit

__all__ = ["BatchJob", "CallWatch", "Slot", "arm", "discard", "sampler_chain", "switch"]

log = logging.getLogger(__name__)

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
    # GBNF that constrains the whole reply (a forced tool call), or None.
    grammar: str | None = None
    watch: CallWatch | None = None  # an "auto" reply with tools: switches to a call grammar


@dataclass
class CallWatch:
    """Watches an "auto" reply's text for the start of a tool call, and hands out the grammar
    for the rest of it once (llama.cpp's lazy-grammar idea, done here: a lazy grammar whose
    trigger token also carries text the grammar refuses aborts the process).

    The switch happens only when the token that completed the tag carried nothing after it
    but whitespace (the grammar's start); otherwise the call stays free and is parsed."""

    grammar: str
    tail: str = ""
    fired: bool = False

    def seen(self, piece: str) -> str | None:
        """The grammar to switch to after this piece, if it is the moment."""
        if self.fired:
            return None
        self.tail = (self.tail + piece)[-(len(CALL_OPEN) + len(piece)) :]
        at = self.tail.find(CALL_OPEN)
        if at < 0:
            return None
        self.fired = True
        rest = self.tail[at + len(CALL_OPEN) :]
        return self.grammar if not rest.strip() else None


def arm(job: BatchJob, model: Any) -> BackendError | None:
    """Give a reply its sampler chain and text decoder; the error, fit for the user, when the
    chain cannot be built (nothing of the engine's is touched before this, so only this job
    fails)."""
    try:
        job.sampler = sampler_chain(job.params, model, job.grammar)
    except Exception as exc:  # the job's own objects only: the engine goes on
        log.error("could not build a sampler chain: %r", exc)
        return BackendError(f"llama.cpp could not prepare this reply's sampling: {exc}")
    job.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return None


def switch(job: BatchJob, model: Any, grammar: str) -> None:
    """Replace a generating job's chain with one constrained by grammar; if that fails the
    reply goes on unconstrained (its call is parsed as written)."""
    try:
        chain = sampler_chain(job.params, model, grammar)
    except Exception as exc:  # the job keeps its working chain
        log.error("could not switch to a tool-call grammar: %r", exc)
        return
    job.sampler.close()
    job.sampler = chain


def discard(_item: Chunk | BaseException | None) -> None:
    """Where a settle job's (empty) output goes."""


@dataclass
class Slot:
    tokens: list[int] = field(default_factory=list)  # what the sequence holds, in order
    canonical: int = 0  # leading tokens evaluated as prompt (reusable by a seeded chat)
    key: str | None = None
    job: BatchJob | None = None
    used: int = 0  # when it last started a job (for choosing which free slot to reuse)


def sampler_chain(params: GenerationParams, model: Any, grammar: str | None = None) -> Any:
    """The chat's own chain, in the order llama-cpp-python's Llama builds it; a grammar goes
    before the truncating samplers, so top-k cannot leave it only refused tokens."""
    sampler = internals.LlamaSampler()
    sampler.add_penalties(
        n_vocab=model.n_vocab(),
        penalty_last_n=_PENALTY_LAST_N,
        penalty_repeat=params.repeat_penalty,
        penalty_freq=params.frequency_penalty,
        penalty_present=params.presence_penalty,
    )
    if grammar is not None:
        constrained = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar.encode("utf-8"), b"root"
        )
        if not constrained:
            sampler.close()
            raise BackendError("llama.cpp refused the tool-call grammar (see its log)")
        llama_cpp.llama_sampler_chain_add(sampler.sampler, constrained)
    if params.temperature == 0:
        sampler.add_greedy()
    else:
        sampler.add_top_k(params.top_k)
        sampler.add_top_p(params.top_p, 1)
        sampler.add_min_p(params.min_p, 1)
        sampler.add_temp(params.temperature)
        sampler.add_dist(params.seed)
    return sampler
