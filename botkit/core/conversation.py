"""Conversations: build the prompt within the token budget, generate, and store the turn.

Budget = context window − reply reserve (max_tokens) − safety margin. When the stored history
no longer fits, the oldest messages are dropped down to a lower watermark (history.trim_to of
the budget) rather than one per turn, so the prompt prefix, and llama.cpp's cache of it, stays
the same for many turns.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from botkit.backends.base import (
    Backend,
    BackendBusy,
    BackendError,
    ContextOverflow,
    GenerationParams,
    Message,
    Usage,
)
from botkit.core.settings import RANDOM_SEED, SEED_MAX, ChatSettings
from botkit.core.streaming import ReplyStream
from botkit.store.models import MessageStatus
from botkit.store.repository import ChatRecord, NewMessage, StoredMessage

if TYPE_CHECKING:
    from botkit.core.app import Bot
    from botkit.core.context import Context

__all__ = ["ContextReport", "Conversation", "PromptPlan", "Reply"]

log = logging.getLogger(__name__)

INTERRUPTED_MARK = " [interrupted]"


@dataclass(frozen=True, slots=True)
class PromptPlan:
    """The messages to send and how the window is spent."""

    messages: list[Message]
    window: int
    reserve: int
    persona_tokens: int
    history_tokens: int
    new_tokens: int
    kept_messages: int
    start_id: int

    @property
    def used(self) -> int:
        """Tokens the prompt takes, reply reserve not included."""
        return self.persona_tokens + self.history_tokens + self.new_tokens


@dataclass(frozen=True, slots=True)
class ContextReport:
    """What /context shows."""

    plan: PromptPlan
    dropped_messages: int  # stored, but before the window: the model no longer sees them

    @property
    def free(self) -> int:
        """Tokens neither used nor reserved."""
        p = self.plan
        return max(0, p.window - p.used - p.reserve)


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished (or interrupted) reply."""

    text: str
    status: str
    seed: int
    usage: Usage | None


def _render(message: StoredMessage) -> Message:
    content = f"{message.author}: {message.content}" if message.author else message.content
    return {"role": message.role, "content": content}  # type: ignore[typeddict-item]


class Conversation:
    """Prompt building, trimming and the generate-and-store turn."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    def budget(self, backend: Backend, settings: ChatSettings) -> int:
        """Tokens available to persona + history + new message."""
        margin = self.bot.config.history.safety_margin_tokens
        return backend.context_window - settings.max_tokens - margin

    async def plan(
        self, chat: ChatRecord, settings: ChatSettings, new: Message | None
    ) -> PromptPlan:
        """Fit persona + newest history + new message into the budget, trimming if needed."""
        backend = self.bot.backends[settings.backend]
        repo = self.bot.repo
        rows = await repo.window(chat.id, chat.window_start_id)
        rows = await self._counted(rows, backend)
        system: Message = {"role": "system", "content": settings.persona}
        # Per-message counts are cached by the backend (the new message is counted again when
        # the turn is stored); the template is additive, the backend checks the exact prompt.
        fixed = await backend.count_tokens([system])
        if new is not None:
            fixed += await backend.message_tokens(new)
        persona = await backend.message_tokens(system)
        budget = self.budget(backend, settings)
        if fixed > budget:
            raise ContextOverflow(
                f"the persona ({persona} tokens) and your message ({fixed - persona} tokens with "
                f"the template) leave no room in the {backend.context_window}-token window with "
                f"{settings.max_tokens} tokens reserved for the reply: shorten the message, "
                "the persona, or lower /maxtokens"
            )
        history = sum(r.token_count for r in rows)
        start = chat.window_start_id
        if fixed + history > budget:
            target = int(budget * self.bot.config.history.trim_to)
            while rows and fixed + history > target:
                history -= rows.pop(0).token_count
            start = rows[0].id if rows else await self._next_id(chat)
            await repo.set_window_start(chat.id, start)
        messages = [system, *(_render(r) for r in rows)]
        if new is not None:
            messages.append(new)
        return PromptPlan(
            messages=messages,
            window=backend.context_window,
            reserve=settings.max_tokens,
            persona_tokens=persona,
            history_tokens=history,
            new_tokens=fixed - persona,
            kept_messages=len(rows),
            start_id=start,
        )

    async def _next_id(self, chat: ChatRecord) -> int:
        rows = await self.bot.repo.window(chat.id, chat.window_start_id)
        return (rows[-1].id + 1) if rows else chat.window_start_id

    async def _counted(self, rows: list[StoredMessage], backend: Backend) -> list[StoredMessage]:
        """Rows with token counts from this backend's tokenizer (recounting others, once)."""
        stale = [r for r in rows if r.token_model != backend.tokenizer_id]
        if not stale:
            return rows
        counts = {r.id: await backend.message_tokens(_render(r)) for r in stale}
        await self.bot.repo.recount([(i, n, backend.tokenizer_id) for i, n in counts.items()])
        return [
            replace(r, token_count=counts[r.id], token_model=backend.tokenizer_id)
            if r.id in counts
            else r
            for r in rows
        ]

    async def report(self, chat: ChatRecord, settings: ChatSettings) -> ContextReport:
        """The window as it would be spent by the next turn (without a new message)."""
        plan = await self.plan(chat, settings, None)
        # Counted only here: a COUNT over a long history is not paid on every turn.
        return ContextReport(plan, await self.bot.repo.count_before(chat.id, plan.start_id))

    async def respond(self, ctx: Context, text: str, *, seed: int | None = None) -> Reply:
        """Answer text in ctx's chat: stream the reply to the chat and store the turn.

        seed overrides the chat's seed setting for this reply (as /retry does).
        """
        settings = ctx.settings
        backend = ctx.backend
        author = ctx.incoming.user.name if not ctx.incoming.is_dm else None
        user_message: Message = {
            "role": "user",
            "content": f"{author}: {text}" if author else text,
        }
        plan = await self.plan(ctx.chat, settings, user_message)
        if seed is None:
            seed = settings.seed
        if seed == RANDOM_SEED:
            seed = random.randint(0, SEED_MAX)
        params = GenerationParams(
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            min_p=settings.min_p,
            repeat_penalty=settings.repeat_penalty,
            max_tokens=settings.max_tokens,
            seed=seed,
            repeatable=settings.seed != RANDOM_SEED,
        )
        stream = ReplyStream(ctx.target)
        usage: Usage | None = None
        metrics = self.bot.metrics
        started = time.perf_counter()
        first: float | None = None
        chat_name = str(ctx.chat.key)
        waiting = self.bot.scheduler.queued(backend.name)
        if waiting >= self.bot.config.service.max_queue:
            raise BackendBusy(
                f"the model is busy ({waiting} replies are waiting); try again in a moment"
            )
        ahead = self.bot.scheduler.ahead_of(backend.name, chat_name)
        if ahead:
            noun = "reply" if ahead == 1 else "replies"
            await stream.status(f"⏳ In the queue: {ahead} {noun} to generate before yours.")
        metrics.queue.labels(backend.name).set(waiting + 1)
        try:
            async with self.bot.scheduler.slot(backend.name, backend.max_parallel, chat_name):
                metrics.queue.labels(backend.name).set(self.bot.scheduler.queued(backend.name))
                async for chunk in backend.stream(plan.messages, params, cache_key=chat_name):
                    if chunk.text:
                        if first is None:
                            first = time.perf_counter()
                            metrics.ttft.labels(backend.name).observe(first - started)
                        await stream.append(chunk.text)
                    if chunk.usage is not None:
                        usage = chunk.usage
        except (asyncio.CancelledError, BackendError) as exc:
            reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else str(exc)
            log.info("reply in %s interrupted: %s", chat_name, reason)
            # Shielded: the turn is stored even though this task is being cancelled.
            await asyncio.shield(
                self._store(
                    ctx, backend, text, author, stream.text, MessageStatus.INTERRUPTED, seed
                )
            )
            if isinstance(exc, BackendError) and stream.text:
                await stream.finish(INTERRUPTED_MARK)
            metrics.replies.labels(backend.name, MessageStatus.INTERRUPTED).inc()
            raise
        await self._store(ctx, backend, text, author, stream.text, MessageStatus.COMPLETE, seed)
        metrics.replies.labels(backend.name, MessageStatus.COMPLETE).inc()
        if first is not None and usage is not None and usage.completion_tokens > 1:
            elapsed = time.perf_counter() - first
            if elapsed > 0:
                rate = (usage.completion_tokens - 1) / elapsed
                metrics.tokens_per_second.labels(backend.name).observe(rate)
        await stream.finish()
        return Reply(stream.text, MessageStatus.COMPLETE, seed, usage)

    async def _store(
        self,
        ctx: Context,
        backend: Backend,
        text: str,
        author: str | None,
        reply: str,
        status: str,
        seed: int,
    ) -> None:
        user_tokens = await backend.message_tokens(
            {"role": "user", "content": f"{author}: {text}" if author else text}
        )
        rows = [
            NewMessage(
                "user", author, text, user_tokens, backend.tokenizer_id, MessageStatus.COMPLETE
            )
        ]
        if reply:
            reply_tokens = await backend.message_tokens({"role": "assistant", "content": reply})
            rows.append(
                NewMessage(
                    "assistant", None, reply, reply_tokens, backend.tokenizer_id, status, seed
                )
            )
        await self.bot.repo.add_messages(ctx.chat.id, rows)
