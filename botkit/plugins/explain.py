"""See what the model does: /probs, /tokens, /retry and /stats — botkit's own commands, on the
internal Context (not the public plugin API: they reach the backend, the scheduler, the
conversation and the store directly).

/probs shows the model's real next-token distribution (llama.cpp logits) before and after the
chat's sampling settings; /tokens shows how text is split into tokens; /retry regenerates the
last reply with the same seed (the same text) or a new one; /stats shows the KV cache at work
in the last reply (prompt tokens reused, prefill time, time to first token, tokens/s).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import numpy as np
from pydantic import Field

from botkit.backends.base import TokenInspector, Usage
from botkit.core.commands import CommandError, Plugin
from botkit.core.context import Context
from botkit.core.sampling import sample_distribution
from botkit.core.settings import RANDOM_SEED, SeedValue, Temperature, TopK, TopP
from botkit.plugins.charts import probs_chart, token_label

__all__ = ["plugin"]

plugin = Plugin("explain", help="See what the model does", internal=True)

Text = Annotated[str, Field(min_length=1, max_length=2000)]
SHOWN = 10
_BAR = 20


def _inspector(ctx: Context, what: str) -> TokenInspector:
    backend = ctx.backend
    if not isinstance(backend, TokenInspector):
        raise CommandError(
            f"backend {backend.name!r} cannot show {what} (only in-process llama.cpp models can); "
            "switch this chat with /model NAME"
        )
    return backend


def _bar(p: float) -> str:
    return "█" * round(p * _BAR)


@plugin.command("probs", uses_model=True)
async def probs(
    ctx: Context,
    text: Text,
    temperature: Temperature | None = None,
    top_k: TopK | None = None,
    top_p: TopP | None = None,
) -> None:
    """The model's next-token probabilities after your text, before and after sampling."""
    backend = _inspector(ctx, "token probabilities")
    s = ctx.settings
    temp = s.temperature if temperature is None else temperature
    k = s.top_k if top_k is None else top_k
    p = s.top_p if top_p is None else top_p
    # The model's worker is shared: /probs waits for its turn like a reply does.
    model = ctx.backend
    async with ctx.scheduler.slot(model.name, model.max_parallel, str(ctx.chat.key)):
        logits = await backend.next_token_logits([{"role": "system", "content": s.persona}], text)
    cut = sample_distribution(logits, temperature=temp, top_k=k, top_p=p, min_p=s.min_p)
    top = np.argsort(-cut.raw, kind="stable")[:SHOWN]
    pieces = await backend.token_pieces([int(t) for t in top])
    raw = [float(cut.raw[t]) for t in top]
    final = [float(cut.final[t]) for t in top]
    settings = f"temperature {temp:g}, top_k {k}, top_p {p:g}, min_p {s.min_p:g}"
    width = max(len(token_label(piece)) for piece in pieces)
    lines = [
        f"Next token after {text!r} (the chat's persona before it):",
        f"settings: {settings} (llama.cpp cuts top-k, then top-p, then min-p, then applies the "
        "temperature to what is left)",
        f" #  {'token'.ljust(width)}    raw   after",
    ]
    for rank, (piece, before, after) in enumerate(zip(pieces, raw, final, strict=True), 1):
        mark = "" if after > 0 else "  cut"
        lines.append(
            f"{rank:2d}  {token_label(piece).ljust(width)}  {before:6.1%}  {after:6.1%}  "
            f"{_bar(before):<{_BAR}} | {_bar(after)}{mark}"
        )
    lines.append(
        f"These {SHOWN} hold {sum(raw):.1%} of the raw probability; {cut.survivors} token(s) "
        "survive the cut and share 100% after it."
    )
    chart = await asyncio.to_thread(probs_chart, pieces, raw, final, settings)
    await ctx.reply_image(chart, "\n".join(lines))


@plugin.command("tokens", uses_model=True)
async def tokens(ctx: Context, text: Text) -> str:
    """How the model splits text into tokens: each piece with its id, and the count."""
    backend = _inspector(ctx, "its tokens")
    ids = await backend.tokenize(text)
    pieces = await backend.token_pieces(ids)
    lines = [f"{len(ids)} token(s), {len(text)} characters:"]
    lines += [
        f"  {token_id:>6}  {token_label(piece)}"
        for token_id, piece in zip(ids, pieces, strict=True)
    ]
    return "\n".join(lines)


@plugin.command("retry", changes_history=True, uses_model=True)
async def retry(ctx: Context, seed: SeedValue | None = None) -> None:
    """Generate the last reply again: with its seed (the same text), `random`, or a given seed.

    The earlier reply stays until the new one is complete, and is kept as an alternative."""
    chosen = None if seed is None else RANDOM_SEED if seed == "random" else int(seed)
    reply, old = await ctx.conversation.regenerate(ctx, chosen)
    if reply.status != "complete":
        return
    same = "the same seed" if reply.seed == old.seed else "a new seed"
    await ctx.reply(f"(seed {reply.seed}: {same})")


_ENDED = {
    "stop": "the model ended it",
    "length": "it reached max_tokens",
    "cancelled": "it was stopped",
}


def _seconds(value: float | None) -> str:
    return "not reported" if value is None else f"{value:.3f} s"


def describe_usage(usage: Usage) -> list[str]:
    """A reply's figures in words: how much of the prompt the KV cache saved, and timings."""
    cached = usage.cached_prompt_tokens
    if cached is None:
        prompt = f"{usage.prompt_tokens} tokens (this backend does not say how many were cached)"
        evaluated = usage.prompt_tokens
    else:
        evaluated = usage.prompt_tokens - cached
        prompt = (
            f"{usage.prompt_tokens} tokens: {cached} reused from the KV cache, {evaluated} "
            "evaluated"
        )
    prefill = _seconds(usage.prefill_seconds)
    if usage.prefill_seconds and evaluated > 0:
        prefill += f" for {evaluated} tokens ({evaluated / usage.prefill_seconds:.0f} tokens/s)"
    speed = usage.tokens_per_second
    rate = "speed not measured" if speed is None else f"{speed:.1f} tokens/s"
    lines = [
        f"  prompt: {prompt}",
        f"  prefill: {prefill}",
        f"  time to first token: {_seconds(usage.first_token_seconds)}",
        f"  reply: {usage.completion_tokens} tokens at {rate} "
        f"({_ENDED.get(usage.stop_reason, usage.stop_reason)})",
    ]
    if usage.state_restored is not None:
        if usage.state_restored:
            state = "restored from this chat's saved state (another chat had used the model)"
        elif cached:
            state = "reused what the model's live context already held"
        else:
            state = "cold: nothing of this chat was cached"
        lines.append(f"  KV cache: {state}")
    return lines


@plugin.command("stats")
async def stats(ctx: Context) -> str:
    """The KV cache at work: the last reply's reused prompt tokens, prefill and speed.

    Prompt tokens and how many came from the KV cache, prefill time, time to first token,
    tokens/s, and whether the chat's saved state was restored."""
    data = await ctx.store.last_stats(ctx.chat.id)
    if data is None:
        if await ctx.store.last_reply(ctx.chat.id) is None:
            return "No reply in this chat yet: say something, then /stats."
        return (
            "The last reply has no figures: it was cut before the model finished (or stored "
            "by a botkit older than /stats)."
        )
    usage = Usage.from_json(data)
    lines = [f"The last reply (backend {data.get('backend', '?')}):", *describe_usage(usage)]
    if data.get("image_seconds"):
        lines.append(
            f"  pictures: {float(data['image_seconds']):.2f} s to decode and re-encode them "
            "(and to describe them, for a model that cannot see)"
        )
    if data.get("tool_calls"):
        lines.append(
            f"  tools: {data['tool_calls']} call(s), {float(data.get('tool_seconds', 0)):.2f} s "
            "in the tools (not counted in the figures above, which are the final answer's)"
        )
    return "\n".join(lines)
