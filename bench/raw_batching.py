"""6. botkit's batched engine against llama.cpp's own batched decoding, at 8 and 32 chats.

The baseline is raw llama-cpp-python (the low-level API, no botkit): one context with a
sequence per chat, every prompt prefilled, then one token of every unfinished chat decoded per
`llama_decode` and chosen greedily, until each chat reaches an end-of-generation token or 64
tokens. botkit answers the same questions as chats at once (parallel = the number of chats,
greedy, 64 tokens), through the router's conversation, the store and the reply stream. The
figure is aggregate generated tokens per second; the goal is at least 0.9 of the raw loop's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals

from bench.batching import QUESTIONS
from bench.common import Result, TimingTarget, incoming, started_bot
from botkit.backends.model_files import bundled_model_path

COUNTS = (8, 32)
N_CTX = 1024
MAX_TOKENS = 64
internals: Any = _internals


def _prompts(llm: Any, chats: int) -> list[list[int]]:
    """The bot's default persona and each chat's question, in the model's chat template."""
    from botkit.backends.llama_prompt import PromptTokenizer

    prompts = PromptTokenizer(llm)
    return [
        prompts.prompt(
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]},
            ]
        )
        for i in range(chats)
    ]


def _raw(chats: int) -> float:
    """Aggregate tokens/s of llama.cpp's own batched greedy decoding of the chats' prompts."""
    llm = llama_cpp.Llama(model_path=str(bundled_model_path()), n_ctx=64, verbose=False)
    params = llama_cpp.llama_context_default_params()
    for name, _ in params._fields_:
        setattr(params, name, getattr(llm.context_params, name))
    params.n_ctx, params.n_seq_max, params.kv_unified = N_CTX * chats, chats, False
    params.n_batch = params.n_ubatch = 512
    ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
    batch = internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    vocab, n_vocab = llm._model.vocab, llm.n_vocab()
    prompts = _prompts(llm, chats)
    start = time.perf_counter()
    pos = [0] * chats
    rows: dict[int, int] = {}
    pending = [(seq, list(p)) for seq, p in enumerate(prompts)]
    while pending:  # prefill, as many whole prompts a decode as fit in the batch
        count = 0
        while pending and count + len(pending[0][1]) <= 512:
            seq, tokens = pending.pop(0)
            for i, token in enumerate(tokens):
                b = batch.batch
                b.token[count], b.pos[count], b.n_seq_id[count] = token, i, 1
                b.seq_id[count][0], b.logits[count] = seq, i == len(tokens) - 1
                count += 1
            rows[seq], pos[seq] = count - 1, len(tokens)
        batch.batch.n_tokens = count
        ctx.decode(batch)
        if pending:  # the rows of an earlier decode are gone: keep each chat's first token
            for seq, row in list(rows.items()):
                if row >= 0:
                    rows[seq] = -1 - _argmax(ctx, row, n_vocab)
    generated = 0
    live = dict.fromkeys(range(chats), 0)
    while live:
        count = 0
        next_rows = {}
        for seq in list(live):
            row = rows[seq]
            token = -1 - row if row < 0 else _argmax(ctx, row, n_vocab)
            if llama_cpp.llama_vocab_is_eog(vocab, token) or live[seq] >= MAX_TOKENS:
                del live[seq]
                continue
            live[seq] += 1
            generated += 1
            b = batch.batch
            b.token[count], b.pos[count], b.n_seq_id[count] = token, pos[seq], 1
            b.seq_id[count][0], b.logits[count] = seq, True
            next_rows[seq], pos[seq] = count, pos[seq] + 1
            count += 1
        if not count:
            break
        batch.batch.n_tokens = count
        ctx.decode(batch)
        rows = next_rows
    elapsed = time.perf_counter() - start
    batch.close()
    ctx.close()
    llm.close()
    return generated / elapsed


def _argmax(ctx: Any, row: int, n_vocab: int) -> int:
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, row), (n_vocab,))
    return int(np.argmax(logits))


async def _botkit(chats: int) -> float:
    """Aggregate tokens/s of botkit answering the same questions as chats at once."""
    defaults = {"temperature": 0.0, "max_tokens": MAX_TOKENS, "seed": -1, "repeat_penalty": 1.0}
    backends = {"local": {"parallel": chats, "n_ctx": N_CTX}}
    async with started_bot(defaults=defaults, backends=backends) as bot:
        warm = await bot.router.context(incoming("Hi", "warm"), TimingTarget())
        await bot.conversation.respond(warm, "Hi")
        contexts = [
            await bot.router.context(
                incoming(QUESTIONS[i % len(QUESTIONS)], f"c{i}"), TimingTarget()
            )
            for i in range(chats)
        ]
        start = time.perf_counter()
        replies = await asyncio.gather(
            *(bot.conversation.respond(ctx, ctx.incoming.text) for ctx in contexts)
        )
        elapsed = time.perf_counter() - start
    return sum(r.usage.completion_tokens for r in replies if r.usage) / elapsed


async def run() -> list[Result]:
    """botkit's aggregate tokens/s against the raw batched loop, at 8 and 32 chats."""
    results = []
    for chats in COUNTS:
        raw = await asyncio.to_thread(_raw, chats)
        ours = await _botkit(chats)
        results.append(
            Result(
                f"tokens/s, {chats} chats at once, vs raw batched llama.cpp",
                ours,
                raw,
                "tok/s",
                ours / raw,
                "≥ 0.9",
                ours / raw >= 0.9,
                "greedy, 64 tokens, no penalties; prompts and first tokens included",
            )
        )
    return results
