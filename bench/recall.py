"""12. Memory (recall) on the bundled model: indexing throughput, TTFT with memory on vs off,
and follow-up TTFT warm/cold with memory on.

One bot with the default config (`[defaults] memory = true`, `[retrieval] vectors = true`,
the in-process all-MiniLM-L6-v2 embedder), a 4,096-token window (as bench/followup.py) and
one slot, so that "cold" can be made by another prompt taking the slot.

1. Indexing: a chat of a few hundred stored messages is drained by the Indexer (chunking,
   token counts, inserts, embedding, vectors stored), against LlamaCppEmbedder.embed on the
   same texts with the same batch size. Several chats, medians.
2. Memory on vs off: two chats with the same long history (a fact planted near the start,
   far outside the kept window), one with /memory off, ask the same question in turn;
   medians of the TTFT after a first (cold) round.
3. Warm/cold: follow-ups in the memory-on chat, one after another (its slot live), against
   the same prompts (recorded as sent to the backend) evaluated from a cold slot. Where the
   warm figure is far from the prefill of the new tokens alone, the consecutive prompts are
   compared token by token and the first difference is printed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bench.common import Result, TimingTarget, incoming, median, started_bot
from bench.warm import SENTENCES
from botkit.backends.base import Backend, GenerationParams, Message, Role
from botkit.backends.state_cache import common_prefix
from botkit.core.app import Bot
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage

WINDOW = 4096
MESSAGES = 300  # per chat: about 8k tokens, twice the window
PLANTED_AT = 6
FACT = "Please remember this: the code of my bicycle lock is 7316."
QUESTION = "What is the code of my bicycle lock?"
PERSONA = "You are a helpful assistant."
GREEDY = {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1}


def _texts(salt: str) -> list[tuple[Role, str]]:
    """A long chat with FACT planted near its start (salt keeps chats' texts apart)."""
    out: list[tuple[Role, str]] = []
    for turn in range(MESSAGES // 2):
        user = FACT if turn * 2 == PLANTED_AT else f"{salt} {turn}: {SENTENCES[turn % 5]}"
        out.append((Role.USER, user))
        out.append((Role.ASSISTANT, " ".join(SENTENCES[turn % 3 :])))
    return out


async def _store(bot: Bot, backend: Backend, name: str, texts: list[tuple[Role, str]]) -> int:
    chat = await bot.repo.chat(incoming("", name).chat)
    rows = [
        NewMessage(role, None, text, await backend.message_tokens({"role": role, "content": text}),
                   backend.tokenizer_id, MessageStatus.COMPLETE)
        for role, text in texts
    ]  # fmt: skip
    await bot.repo.add_messages(chat.id, rows)
    return chat.id


async def _indexing(bot: Bot, backend: Backend, rounds: int) -> Result:
    """Messages indexed and embedded per second by the Indexer, against the raw embedder."""
    embedder = bot.retrieval.live_embedder
    assert embedder is not None, bot.retrieval.embedder_failure
    # The bot's own indexer: a second one would embed the same chunks beside it when the
    # bot's looks for work (every 30 s), each at half speed.
    indexer = bot.retrieval.indexer
    assert indexer is not None
    ours: list[float] = []
    raw: list[float] = []
    for r in range(rounds):
        texts = _texts(f"Index round {r}, turn")
        raw_first = r % 2 == 1  # alternate, so neither side always runs on a warmer machine
        if raw_first:
            start = time.perf_counter()
            await embedder.embed([t for _, t in texts])
            raw.append(len(texts) / (time.perf_counter() - start))
        await _store(bot, backend, f"index{r}", texts)
        start = time.perf_counter()
        await indexer.drain()
        ours.append(len(texts) / (time.perf_counter() - start))
        if not raw_first:
            start = time.perf_counter()
            await embedder.embed([t for _, t in texts])
            raw.append(len(texts) / (time.perf_counter() - start))
    left, _ = await bot.repo.chunks.count_unembedded(embedder.name)
    assert left == 0, f"{left} chunks left unembedded"
    rate, base = median(ours), median(raw)
    return Result("indexing throughput (messages/s)", rate, base, "/s", rate / base, "≥ 0.9",
                  rate / base >= 0.9,
                  f"{MESSAGES}-message chats, index_batch {bot.config.retrieval.index_batch}, "
                  f"embedder batch {bot.config.embedder.batch_size}; median of {rounds}",
                  )  # fmt: skip


class _Recorder:
    """Wraps a backend's stream: keeps each prompt (messages) and its usage."""

    def __init__(self, backend: Any) -> None:
        self.prompts: list[list[Message]] = []
        self.cached: list[int | None] = []
        self._stream = backend.stream
        backend.stream = self.stream

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams, *, cache_key: str
    ) -> AsyncIterator[Any]:
        self.prompts.append(list(messages))
        async for chunk in self._stream(messages, params, cache_key=cache_key):
            if chunk.usage is not None:
                self.cached.append(chunk.usage.cached_prompt_tokens)
            yield chunk


async def _ask(bot: Bot, chat: str, text: str) -> float:
    target = TimingTarget()
    ctx = await bot.router.context(incoming(text, chat), target)
    start = time.perf_counter()
    await bot.conversation.respond(ctx, text)
    assert target.first is not None
    return target.first - start


async def _on_off(bot: Bot, rounds: int) -> tuple[Result, str]:
    """TTFT of the same question in the same chat, memory on against off."""
    on: list[float] = []
    off: list[float] = []
    for index in range(rounds + 1):  # round 0: both chats' first, cold prefill
        pair = [("on", on), ("off", off)]
        for name, times in pair if index % 2 else pair[::-1]:
            ttft = await _ask(bot, name, QUESTION)
            if index:
                times.append(ttft)
    chat = await bot.repo.chat(incoming("", "on").chat)
    report = bot.retrieval.sources(chat.id)
    given = [g.candidate.chunk.text for g in report.memory if g.used] if report else []
    recalled = f"planted fact recalled: {FACT in given} ({len(given)} messages given)"
    ratio = median(on) / median(off)
    result = Result("TTFT memory on vs off", median(on) * 1000, median(off) * 1000, "ms", ratio,
                    "≤ 1.1", ratio <= 1.1, f"same question, {rounds} rounds; {recalled}",
                    )  # fmt: skip
    return result, recalled


async def _cold(backend: Any, prompt: list[Message], key: str, params: GenerationParams) -> float:
    """TTFT of prompt from a cold slot: an unrelated prompt takes the one slot first."""
    flush: list[Message] = [
        {"role": "system", "content": "Flush."},
        {"role": "user", "content": key},
    ]
    async for _ in backend.stream(flush, params, cache_key=f"flush-{key}"):
        pass
    start = time.perf_counter()
    first: float | None = None
    async for chunk in backend.stream(prompt, params, cache_key=key):
        if first is None and chunk.text:
            first = time.perf_counter()
        if chunk.usage is not None:
            assert (chunk.usage.cached_prompt_tokens or 0) < 16, chunk.usage
    assert first is not None
    return first - start


async def _differences(
    backend: Any, held: list[list[int]], prompts: list[list[Message]]
) -> list[str]:
    """Where each follow-up's prompt leaves what the slot held after the turn before."""
    _, _, tokenizer = backend._require()
    lines = []
    for i in range(1, len(prompts)):
        prompt = tokenizer.prompt(prompts[i])
        before = held[i - 1]
        common = common_prefix(before, prompt)
        was = "".join(await backend.token_pieces(before[common : common + 12]))
        now = "".join(await backend.token_pieces(prompt[common : common + 12]))
        lines.append(
            f"  follow-up {i}: prompt {len(prompt)} tokens, the slot held {len(before)}; "
            f"same for the first {common}, then held {was!r} but sent {now!r}"
        )
    return lines


async def _warm_cold(
    bot: Bot, backend: Any, rounds: int, max_tokens: int
) -> tuple[Result, list[str]]:
    recorder = _Recorder(backend)
    engine = backend._require()[1]
    warm: list[float] = []
    held: list[list[int]] = []
    for index in range(rounds + 1):  # round 0: the chat's slot is taken back from "off"
        ttft = await _ask(bot, "on", f"And what else? ({index})")
        held.append(engine.held(str(incoming("", "on").chat)))
        if index:
            warm.append(ttft)
    prompts = recorder.prompts[-(rounds + 1) :]
    cached = recorder.cached[-(rounds + 1) :]
    backend.stream = recorder._stream
    params = GenerationParams(**GREEDY, seed=1, max_tokens=max_tokens)
    cold = [await _cold(backend, p, f"cold{i}", params) for i, p in enumerate(prompts[1:], 1)]
    lengths = [len(backend._require()[2].prompt(p)) for p in prompts[1:]]
    lines = await _differences(backend, held, prompts)
    ratio = median(warm) / median(cold)
    tokens = median([float(n) for n in lengths])
    note = (f"memory on; prompts {tokens:.0f} tokens, of them from the cache "
            f"{median([c or 0 for c in cached[1:]]):.0f} (median)")  # fmt: skip
    return Result("follow-up TTFT warm/cold, memory on", median(warm) * 1000,
                  median(cold) * 1000, "ms", ratio, "≤ 0.1", ratio <= 0.1, note), lines  # fmt: skip


async def run(rounds: int = 5, max_tokens: int = 16) -> list[Result]:
    """Indexing throughput, TTFT memory on/off, follow-up TTFT warm/cold with memory on."""
    sections: dict[str, Any] = {
        "backends": {"local": {"n_ctx": WINDOW, "parallel": 1}},
        "defaults": {**GREEDY, "persona": PERSONA, "max_tokens": max_tokens},
    }
    async with started_bot(**sections) as bot:
        assert bot.config.retrieval.vectors
        assert bot.config.defaults.memory
        backend = bot.backends["local"]
        indexing = await _indexing(bot, backend, 3)
        texts = _texts("Turn")
        await _store(bot, backend, "on", texts)
        off = await _store(bot, backend, "off", texts)
        await bot.repo.set_setting(off, "memory", False)
        assert bot.retrieval.indexer is not None
        await bot.retrieval.indexer.drain()
        on_off, recalled = await _on_off(bot, rounds)
        warm_cold, lines = await _warm_cold(bot, backend, rounds, max_tokens)
    print(recalled)
    print("follow-ups with memory on, consecutive prompts against the slot's tokens:")
    print("\n".join(lines))
    return [indexing, on_off, warm_cold]
