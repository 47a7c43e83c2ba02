"""3. Follow-ups in a long chat: when the reply ends, and what saving the chat's state costs.

One chat with a history at 75 % of a 4,096-token window asks short follow-ups (16 tokens,
greedy). botkit's whole path (router, conversation, scheduler, worker thread, reply stream,
store commit) against raw llama-cpp-python `create_chat_completion` on the same messages, with
its prompt warm in the live context (its own prefix reuse); the two alternate, turn by turn,
and go on from the same history (botkit's replies); how many replies came out the same is
reported (greedy, but the two evaluate prompts in different batch shapes). Then the state
save of that 3k-token chat: botkit's copy against llama-cpp-python's `save_state` idiom (a
ctypes slice, which builds a Python list), in time and in peak traced memory, and the restore
likewise against `Llama.load_state`.
"""

from __future__ import annotations

import ctypes
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from llama_cpp import Llama
from llama_cpp import llama_cpp as c
from llama_cpp.llama import LlamaState

from bench.common import Result, TimingTarget, incoming, median, started_bot
from bench.warm import SENTENCES
from botkit.backends import kv_state
from botkit.backends.base import Backend, Message, Role
from botkit.backends.model_files import bundled_model_path
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage

WINDOW = 4096
PERSONA = "You are a helpful assistant."
GREEDY = {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1}


async def _history(backend: Backend) -> list[tuple[Message, int]]:
    """Turns filling 75 % of the window, each message with its token count."""
    messages: list[tuple[Message, int]] = []
    total = 0
    turn = 0
    while total < WINDOW * 0.75 - 200:
        user: Message = {"role": "user", "content": f"Turn {turn}: {SENTENCES[turn % 5]}"}
        reply: Message = {"role": "assistant", "content": " ".join(SENTENCES[turn % 3 :])}
        for m in (user, reply):
            count = await backend.message_tokens(m)
            messages.append((m, count))
            total += count
        turn += 1
    return messages


def _raw_reply(raw: Llama, messages: list[Message], max_tokens: int) -> tuple[str, float, float]:
    start = time.perf_counter()
    first: float | None = None
    text = []
    for part in raw.create_chat_completion(
        [{"role": "system", "content": PERSONA}, *messages],  # type: ignore[list-item]
        stream=True, max_tokens=max_tokens, seed=1, temperature=0.0, top_k=40, top_p=0.95,
        min_p=0.05, repeat_penalty=1.1,
    ):  # fmt: skip
        piece = part["choices"][0]["delta"].get("content")  # type: ignore[index,union-attr]
        if piece:
            text.append(str(piece))
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None
    return "".join(text), first - start, end - start


def _traced(job: Callable[[], Any]) -> tuple[Any, float, int]:
    """job's result, its wall time and its peak traced memory."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    result = job()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak


def _list_copy(ctx: Any) -> bytes:
    """llama-cpp-python's Llama.save_state copy: bytes of a ctypes slice (a list of ints)."""
    size = c.llama_state_get_size(ctx)
    buffer = (ctypes.c_uint8 * int(size))()
    written = int(c.llama_state_get_data(ctx, buffer, size))
    return bytes(buffer[:written])


def _state_figures(raw: Llama) -> list[Result]:
    ctx = raw._ctx.ctx
    tokens = raw.n_tokens
    blob, save_s, save_peak = _traced(lambda: kv_state.snapshot(ctx))
    _, old_s, old_peak = _traced(lambda: _list_copy(ctx))
    size = len(blob)
    state = LlamaState(
        input_ids=raw.input_ids.copy(), scores=np.zeros((1, raw.n_vocab()), dtype=np.single),
        n_tokens=raw.n_tokens, llama_state=bytes(blob), llama_state_size=size, seed=1,
    )  # fmt: skip
    _, restore_s, restore_peak = _traced(lambda: kv_state.restore(ctx, blob))
    _, load_s, load_peak = _traced(lambda: raw.load_state(state))
    mb = size / 1e6
    return [
        Result(f"state save, {tokens}-token chat ({mb:.0f} MB)", save_s * 1000, old_s * 1000,
               "ms", save_s / old_s, "report", True,
               "baseline: llama-cpp-python's save_state copy (a ctypes slice)"),
        Result("state save, peak traced memory / state", save_peak / 1e6, old_peak / 1e6, "MB",
               save_peak / size, "≤ 2", save_peak / size <= 2,
               f"ratio to the {mb:.0f} MB state; baseline peak {old_peak / size:.1f}× the state"),
        Result("state restore", restore_s * 1000, load_s * 1000, "ms", restore_s / load_s,
               "≤ 1", restore_s <= load_s,
               f"baseline: Llama.load_state; peak {restore_peak / 1e6:.1f} MB against "
               f"{load_peak / 1e6:.1f} MB"),
    ]  # fmt: skip


async def run(rounds: int = 6, max_tokens: int = 16) -> list[Result]:
    """Follow-up total time and TTFT against raw llama-cpp-python, then the state save."""
    raw = Llama(str(bundled_model_path()), n_ctx=WINDOW, verbose=False)
    sections: dict[str, Any] = {
        "backends": {"local": {"n_ctx": WINDOW, "state_cache_bytes": 1024**3}},
        "defaults": {**GREEDY, "persona": PERSONA, "max_tokens": max_tokens},
    }
    ours_total: list[float] = []
    ours_ttft: list[float] = []
    raw_total: list[float] = []
    raw_ttft: list[float] = []
    same = 0
    async with started_bot(**sections) as bot:
        backend = bot.backends["local"]
        counted = await _history(backend)
        history = [m for m, _ in counted]
        chat = await bot.repo.chat(incoming("", "followup").chat)
        await bot.repo.add_messages(chat.id, [
            NewMessage(Role(m["role"]), None, m["content"], n, backend.tokenizer_id,
                       MessageStatus.COMPLETE)
            for m, n in counted
        ])  # fmt: skip
        for index in range(rounds + 1):  # round 0 is the cold prefill of both sides
            question = f"And then? ({index})"
            target = TimingTarget()
            ctx = await bot.router.context(incoming(question, "followup"), target)
            start = time.perf_counter()
            reply = await bot.conversation.respond(ctx, question)
            total = time.perf_counter() - start
            assert target.first is not None
            history.append({"role": "user", "content": question})
            raw_text, first, raw_elapsed = _raw_reply(raw, history, max_tokens)
            # Both sides go on from botkit's reply, so every prompt is the same on both.
            history.append({"role": "assistant", "content": reply.text})
            if index:
                same += raw_text == reply.text
                ours_total.append(total)
                ours_ttft.append(target.first - start)
                raw_total.append(raw_elapsed)
                raw_ttft.append(first)
    figures = _state_figures(raw)
    raw.close()
    total, base_total = median(ours_total), median(raw_total)
    ttft, base_ttft = median(ours_ttft), median(raw_ttft)
    return [
        Result("follow-up total time (3k-token chat)", total * 1000, base_total * 1000, "ms",
               total / base_total, "≤ 1.1", total / base_total <= 1.1,
               f"raw llama-cpp-python from its warm prompt; {same} of {rounds} replies the same"),
        Result("follow-up time to first token", ttft * 1000, base_ttft * 1000, "ms",
               ttft / base_ttft, "report", True, "same chat, the same follow-ups"),
        *figures,
    ]  # fmt: skip
