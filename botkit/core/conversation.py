"""Conversations: a turn as one ordered, durable unit (its prompt is planned by planner.py).

A turn's life: admitted (queue room, a message that fits) → written ahead (the user message and
an empty reply row marked generating, one transaction, before any generation) → waits for the
chat's earlier turns, then for a scheduler slot → planned (only now, so the prompt sees every
earlier turn) → generated, the reply row checkpointed every few seconds → finished (complete or
interrupted, one transaction). A crash leaves the reply row generating; the next start marks
it interrupted and it stays in the history.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from botkit.backends.base import (
    Backend,
    BackendBusy,
    ContextOverflow,
    Message,
    Role,
    Usage,
    WindowLearned,
)
from botkit.config import HistoryConfig, VisionConfig
from botkit.core.generation import Generation, Turn, generation_params
from botkit.core.planner import Planner, PromptPlan, render
from botkit.core.scheduler import FairScheduler
from botkit.core.settings import RANDOM_SEED, SEED_MAX, ChatSettings
from botkit.core.sight import Seen
from botkit.core.streaming import INTERRUPTED_MARK, ReplyStream
from botkit.core.tool_turn import check_room, fits, run_round
from botkit.core.turn_source import TurnSource
from botkit.metrics import Metrics
from botkit.retrieval.service import Retrieval
from botkit.store.models import MessageStatus
from botkit.store.repository import ChatRecord, NewMessage, Repository, StoredMessage
from botkit.tools.box import Toolbox, ToolOffer

__all__ = ["Conversation", "NothingToRetry", "Reply"]

log = logging.getLogger(__name__)


class NothingToRetry(Exception):
    """/retry in a chat whose history does not end with a reply."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished (or interrupted) reply."""

    text: str
    status: MessageStatus
    seed: int
    usage: Usage | None


def _concrete(seed: int) -> int:
    """The seed to generate with: "random" (-1) becomes a fresh one."""
    return random.randint(0, SEED_MAX) if seed == RANDOM_SEED else seed


@dataclass
class _ChatLine:
    """One chat's turns: they run one after another, in the order they arrived."""

    order: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0  # turns admitted and not finished
    running: set[asyncio.Task[Reply]] = field(default_factory=set)


class Conversation:
    """Prompt building, trimming and the turn lifecycle."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        store: Callable[[], Repository],
        scheduler: FairScheduler,
        *,
        defaults: ChatSettings | None = None,
        history: HistoryConfig | None = None,
        metrics: Metrics | None = None,
        max_queue: int = 32,
        checkpoint_interval: float = 2.0,
        retrieval: Retrieval | None = None,
        tools: Toolbox | None = None,
        vision: VisionConfig | None = None,
    ) -> None:
        """store: the repository, once the bot has started (asked for at each use). defaults:
        the settings chats' overrides apply to ([defaults]); max_queue: turns written ahead
        and not yet generating, per backend, before a new one is refused ([service]);
        checkpoint_interval: seconds between saves of a growing reply ([storage]);
        retrieval: what a new message recalls and which document passages it is given (None:
        neither); tools: what the model may call (None: nothing)."""
        self._backends = backends
        self.tools = tools
        self._store = store
        self._scheduler = scheduler
        self._defaults = defaults or ChatSettings()
        self._metrics = metrics or Metrics()
        self._max_queue = max_queue
        self.retrieval = retrieval
        self.planner = Planner(history or HistoryConfig(), backends, store, vision)
        self._generation = Generation(store, self._metrics, checkpoint_interval, retrieval)
        self._lines: dict[int, _ChatLine] = {}
        self._admitted: Counter[str] = Counter()  # per backend: written, not yet generating

    def settings_for(self, chat: ChatRecord) -> ChatSettings:
        """A chat's effective settings: its overrides over the defaults."""
        return self._defaults.for_chat(chat.overrides, self._backends)

    def _admit(self, backend: Backend) -> None:
        """Refuse a turn when the backend's queue is full, before anything is written."""
        # Turns written and not yet generating (waiting for their chat or for a slot); /probs
        # and the like wait in the scheduler only.
        waiting = max(self._admitted[backend.name], self._scheduler.queued(backend.name))
        if waiting >= self._max_queue:
            raise BackendBusy(
                f"the model is busy ({waiting} replies are waiting); try again in a moment"
            )

    def _line(self, chat_id: int) -> _ChatLine:
        line = self._lines.get(chat_id)
        if line is None:
            line = self._lines[chat_id] = _ChatLine()
        return line

    @asynccontextmanager
    async def _queued(self, chat_id: int, backend: Backend) -> AsyncIterator[_ChatLine]:
        """Count a written turn as waiting until it leaves; forget idle chats' lines."""
        line = self._line(chat_id)
        line.waiting += 1
        self._admitted[backend.name] += 1
        try:
            yield line
        finally:
            line.waiting -= 1
            if not line.waiting and not line.order.locked():
                self._lines.pop(chat_id, None)

    async def respond(
        self,
        ctx: TurnSource,
        text: str,
        *,
        seed: int | None = None,
        tool: str | None = None,
        seen: Seen | None = None,
    ) -> Reply:
        """Answer text in ctx's chat: write the turn ahead, wait for the chat's earlier turns,
        stream the reply to the chat and store it. seed overrides the chat's seed setting;
        tool: a tool the model must call first (its name); seen: the message's pictures, as
        core/sight.py made them ready for this chat's model."""
        backend = ctx.backend
        author = ctx.incoming.user.name if not ctx.incoming.is_dm else None
        seen = seen or Seen()
        if seen.added:  # a describing backend's words for a model that cannot see
            text = f"{text}\n\n{seen.added}" if text else seen.added
        new: Message = {"role": "user", "content": f"{author}: {text}" if author else text}
        if seen.shown:
            new["images"] = list(seen.pictures)
        self._admit(backend)
        await self.planner.fixed_cost(
            backend, ctx.settings, new
        )  # never write a turn that cannot fit
        tokens = await backend.message_tokens({"role": "user", "content": new["content"]})
        row = NewMessage(
            Role.USER, author, text, tokens, backend.tokenizer_id, MessageStatus.COMPLETE
        )
        user_id, reply_id = await self._store().begin_turn(ctx.chat.id, row, images=seen.pictures)
        assert user_id is not None
        ctx.accepted()  # committed: the platform may now confirm the message as delivered
        if seen.note:
            await ctx.target.send(seen.note)
        turn = Turn(ctx, backend, reply_id, user_id, new, seed, forced=tool,
                    image_seconds=seen.seconds)  # fmt: skip
        return await self._run(turn)

    async def regenerate(self, ctx: TurnSource, seed: int | None) -> tuple[Reply, StoredMessage]:
        """Generate the chat's last reply again (after its earlier turns); the old reply stays
        until the new one is complete, then is kept as an alternative. Returns the new reply
        and the old one."""
        backend = ctx.backend
        self._admit(backend)
        line = self._line(ctx.chat.id)
        async with line.order:
            turn = await self._store().last_turn(ctx.chat.id)
            if turn is None:
                if not line.waiting:
                    self._lines.pop(ctx.chat.id, None)  # no turn will forget this line
                raise NothingToRetry("there is no reply to retry in this chat yet")
            _, old = turn
            if seed is None and old.seed is not None:
                seed = old.seed
            _, reply_id = await self._store().begin_turn(ctx.chat.id, None, replaces=old.id)
            ctx.accepted()  # written ahead: the chat's next message may be taken
        reply = await self._run(Turn(ctx, backend, reply_id, old.id, None, seed, old.id))
        return reply, old

    async def complete(
        self, ctx: TurnSource, messages: list[Message], max_tokens: int | None = None
    ) -> str:
        """One generation outside the chat's history (for plugins): with the chat's model and
        sampling options, admitted and scheduled like a reply; nothing is stored."""
        backend, settings = ctx.backend, ctx.settings
        self._admit(backend)
        limit = max_tokens or settings.max_tokens
        prompt = await backend.count_tokens(messages)
        if prompt + limit > backend.context_window:
            raise ContextOverflow(
                f"that request is {prompt} tokens and its answer may take {limit}: more than "
                f"the {backend.context_window}-token window"
            )
        params = generation_params(settings, _concrete(settings.seed), limit)
        chat = str(ctx.chat.key)
        async with self._scheduler.slot(backend.name, backend.max_parallel, chat):
            pieces = [c.text async for c in backend.stream(messages, params, cache_key=f"{chat}+")]
        return "".join(pieces)

    async def after_earlier_turns(self, chat_id: int) -> None:
        """Return once the chat's turns admitted so far have finished (a command that follows
        them sees what they stored, and is answered after them). A turn is in its line's
        running set from before its message's place in the arrival order is released."""
        line = self._lines.get(chat_id)
        if line is not None and line.running:
            await asyncio.wait(set(line.running))  # never cancels them, unlike gather

    async def cancel(self, chat_id: int) -> None:
        """Stop the chat's replies in flight and its waiting turns (for /reset); returns when
        they have stored what they had."""
        line = self._lines.get(chat_id)
        if line is None:
            return
        current = asyncio.current_task()
        tasks = [t for t in line.running if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, turn: Turn) -> Reply:
        chat_id = turn.ctx.chat.id
        async with self._queued(chat_id, turn.backend) as line:
            inner = asyncio.create_task(self._generate(turn, line))
            line.running.add(inner)
            try:
                return await inner
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being cancelled (shutdown, Ctrl-C), not just this reply
                # Cancelled by /reset: the turn is gone with the history.
                return Reply("", MessageStatus.INTERRUPTED, turn.seed or 0, None)
            finally:
                line.running.discard(inner)

    async def _generate(self, turn: Turn, line: _ChatLine) -> Reply:
        ctx, backend = turn.ctx, turn.backend
        chat_name = str(ctx.chat.key)
        scheduler = self._scheduler
        stream = ReplyStream(ctx.target)
        ahead = max(scheduler.ahead_of(backend.name, chat_name), line.waiting - 1)
        counted = False
        try:
            if ahead > 0:
                noun = "reply" if ahead == 1 else "replies"
                await stream.status(f"⏳ In the queue: {ahead} {noun} to generate before yours.")
            async with line.order, scheduler.slot(backend.name, backend.max_parallel, chat_name):
                self._admitted[backend.name] -= 1
                counted = True
                return await self._answer(turn, stream)
        finally:
            if not counted:
                self._admitted[backend.name] -= 1

    async def _answer(self, turn: Turn, stream: ReplyStream) -> Reply:
        """Plan (now that every earlier turn is stored), generate with checkpoints, store."""
        ctx, backend, repo = turn.ctx, turn.backend, self._store()
        chat = await repo.chat(ctx.chat.key)  # fresh: earlier turns may have trimmed it
        settings = self.settings_for(chat)
        seed = _concrete(settings.seed if turn.seed is None else turn.seed)
        metrics = self._metrics
        metrics.queue.labels(backend.name).set(self._scheduler.queued(backend.name))
        try:
            rows = await self.planner.history(chat, backend, turn.before)
            new, new_id = turn.new, turn.before
            if new is None and rows and rows[-1].role == "user":
                # A /retry: its question is the last stored message. It is never trimmed away
                # (the reply would answer a prompt without it): it must fit like a new one.
                question = rows.pop()
                new, new_id = render(question), question.id
            offer = await self._offer(turn)

            async def planned(extra: int = 0) -> PromptPlan:
                """The prompt, with room for extra tokens of tool rounds after it."""
                plan = await self.planner.plan_turn(
                    chat, settings, rows, new, new_id, self.retrieval, offer.tokens + extra
                )
                if plan.start_id > chat.window_start_id:
                    await repo.set_window_start(chat.id, plan.start_id)
                return plan

            for last in (False, True):  # planned again, once, for a window the server named
                try:
                    usage = await self._rounds(turn, planned, settings, seed, stream, offer)
                    break
                except WindowLearned:
                    if last:
                        raise
        except BaseException as exc:
            # Whatever ends a turn early (an error of any kind, a cancel), the reply is stored
            # as interrupted with the text so far and the turn's bookkeeping is freed.
            cancelled = isinstance(exc, asyncio.CancelledError)
            reason = "cancelled" if cancelled else f"{type(exc).__name__}: {exc}"
            log.info("reply in %s interrupted: %s", ctx.chat.key, reason)
            # Shielded: the turn is stored even though this task is being cancelled.
            await asyncio.shield(
                self._generation.finish(turn, stream, MessageStatus.INTERRUPTED, seed)
            )
            if not cancelled and stream.text:
                await stream.finish(INTERRUPTED_MARK)
            metrics.replies.labels(backend.name, MessageStatus.INTERRUPTED).inc()
            raise
        await self._generation.finish(turn, stream, MessageStatus.COMPLETE, seed, usage)
        metrics.replies.labels(backend.name, MessageStatus.COMPLETE).inc()
        await stream.finish()
        return Reply(stream.text, MessageStatus.COMPLETE, seed, usage)

    async def _offer(self, turn: Turn) -> ToolOffer:
        """The tools this turn's model is given (none for a /retry's regenerated answer: it
        answers from the calls and results already in the history)."""
        if self.tools is None or turn.replaces is not None:
            return ToolOffer()
        return await self.tools.offer(turn.ctx, turn.backend, turn.forced)

    async def _rounds(
        self,
        turn: Turn,
        planned: Callable[[int], Awaitable[PromptPlan]],
        settings: ChatSettings,
        seed: int,
        stream: ReplyStream,
        offer: ToolOffer,
    ) -> Usage | None:
        """Generate; while the model calls tools (up to max_rounds), run them and generate
        again with their results. The round after the last may not call. planned(extra): the
        prompt with room for extra tokens of the rounds (a round that does not fit beside the
        history trims the history further, like a long message)."""
        prompt = list((await planned(0)).messages)
        rounds_so_far: list[Message] = []
        messages = prompt
        rounds = self.tools.max_rounds if self.tools is not None and offer.specs else 0
        for done in range(rounds + 1):
            choice = "auto" if done < rounds and offer.auto else "none"
            if done == 0 and offer.forced is not None:
                choice = offer.forced
            usage, calls = await self._generation.stream(turn, messages, settings, seed, stream,
                                              offer, choice)  # fmt: skip
            if not calls or done == rounds or self.tools is None:
                return usage
            turn.reply_id, added = await run_round(
                turn.ctx, turn.backend, self._store(), self.tools, turn.reply_id,
                turn.text(stream), calls, offer.specs, stream, turn.tools,
            )  # fmt: skip
            turn.shown_from = len(stream.text)
            rounds_so_far += added
            messages = prompt + rounds_so_far
            if not await fits(turn.backend, messages, offer.tokens, settings.max_tokens):
                extra = sum([await turn.backend.message_tokens(m) for m in rounds_so_far])
                prompt = list((await planned(extra)).messages)
                messages = prompt + rounds_so_far
                await check_room(turn.backend, messages, offer.tokens, settings.max_tokens)
        return None
