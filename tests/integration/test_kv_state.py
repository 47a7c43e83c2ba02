"""Saving a chat's KV state: one copy of it in memory, and never before the reply is sent."""

from __future__ import annotations

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


async def test_one_slot_keeps_a_chat_whose_slot_was_taken_and_restores_it() -> None:
    # parallel = 1 is a one-slot engine: the chat's tokens stay in the slot after its reply
    # (nothing is saved while it waits), and go to the state cache only when another chat
    # takes the slot; its next turn loads them back instead of evaluating its history again.
    backend = LlamaCppBackend("local", LlamaCppConfig(parallel=1))
    await backend.start()
    try:
        params = GenerationParams(temperature=0.0, max_tokens=8, seed=1)
        first: list[Message] = [{"role": "user", "content": "Say hello."}]
        reply = "".join([c.text async for c in backend.stream(first, params, cache_key="a")])
        assert backend.state_cache.get("a") is None
        other: list[Message] = [{"role": "user", "content": "Name a colour."}]
        async for _ in backend.stream(other, params, cache_key="b"):
            pass
        assert backend.state_cache.peek("a") is not None
        follow: list[Message] = [*first, {"role": "assistant", "content": reply},
                                 {"role": "user", "content": "Again."}]  # fmt: skip
        usage = None
        async for chunk in backend.stream(follow, params, cache_key="a"):
            usage = chunk.usage or usage
        assert usage is not None
        assert usage.state_restored
        assert (usage.cached_prompt_tokens or 0) >= await backend.count_tokens(first) - 1
    finally:
        await backend.close()
