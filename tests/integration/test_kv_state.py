"""Saving a chat's KV state: one copy of it in memory, and never before the reply is sent."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from llama_cpp import Llama

from botkit.backends import kv_state
from botkit.backends.base import GenerationParams, Message
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.backends.model_files import bundled_model_path
from botkit.config import LlamaCppConfig

LONG = " ".join(f"Sentence {i} is about the lighthouse keeper and the ships." for i in range(90))


@pytest.fixture(scope="module")
def llm() -> Iterator[Llama]:
    model = Llama(str(bundled_model_path()), n_ctx=2048, verbose=False)
    yield model
    model.close()


def _logits(llm: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


def test_a_long_chats_state_is_saved_in_one_copy_and_restores_exactly(llm: Any) -> None:
    tokens = llm.tokenize(LONG.encode())
    assert len(tokens) > 1000
    llm.reset()
    llm.eval(tokens)
    ctx = llm._ctx.ctx
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        blob = kv_state.snapshot(ctx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # ~22 KiB of KV per token for this model.
    assert len(blob) > len(tokens) * 20_000
    assert peak < 2 * len(blob)

    llm.eval(llm.tokenize(b" The end"))
    expected = _logits(llm)
    llm.reset()
    llm.eval(llm.tokenize(b"Something else entirely, to overwrite the cache."))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        kv_state.restore(ctx, blob)
        _, restore_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert restore_peak < len(blob) // 10  # read in place, not copied
    llm.n_tokens = len(tokens)
    llm.eval(llm.tokenize(b" The end"))
    assert np.array_equal(_logits(llm), expected)


class RecordsOrder(LlamaCppBackend):
    """The real backend; its state save waits until the consumer has seen the final chunk.
    One slot: the single-context path saves after every reply (the batched one keeps the
    chat's tokens in its slot and saves only when another chat takes it)."""

    def __init__(self) -> None:
        super().__init__("local", LlamaCppConfig(parallel=1))
        self.events: list[str] = []
        self.final_seen = threading.Event()

    def _save_state(self, llm: Any, cache_key: str) -> None:
        # Bounded, so a save that blocks the final chunk fails the test instead of hanging it.
        seen = self.final_seen.wait(timeout=60)
        self.events.append("state saved" if seen else "state saved before the final chunk")
        super()._save_state(llm, cache_key)


async def test_the_final_chunk_arrives_before_the_state_is_saved() -> None:
    backend = RecordsOrder()
    await backend.start()
    try:
        messages: list[Message] = [{"role": "user", "content": "Say hello."}]
        params = GenerationParams(temperature=0.0, max_tokens=8, seed=1)
        async for chunk in backend.stream(messages, params, cache_key="a"):
            if chunk.usage is not None:
                backend.events.append("final chunk")
                backend.final_seen.set()
        # The next job on the worker runs after the save: the state is there for the next turn.
        await asyncio.get_running_loop().run_in_executor(backend._executor, lambda: None)
        assert backend.events == ["final chunk", "state saved"]
        assert backend.state_cache.get("a") is not None
    finally:
        await backend.close()
