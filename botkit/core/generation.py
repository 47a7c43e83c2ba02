"""Generating one reply row: streaming the model's text into the chat while checkpointing
the row, and storing it finished (or interrupted) with its figures. A turn with tool rounds
generates several rows, one after another (botkit.core.tool_turn)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botkit.backends.base import (
    Backend,
    GenerationParams,
    Message,
    Role,
    Usage,
    generation_speed,
)
from botkit.core.planner import count_reply
from botkit.core.settings import RANDOM_SEED, ChatSettings
from botkit.core.streaming import RecoverableTarget, ReplyStream
from botkit.core.tool_turn import RoundState
from botkit.core.turn_source import TurnSource
from botkit.metrics import Metrics
from botkit.retrieval.service import Retrieval
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage, Repository
from botkit.tools.box import ToolOffer
from botkit.tools.spec import ToolCall

__all__ = ["Generation", "Turn", "generation_params"]


def generation_params(settings: ChatSettings, seed: int, max_tokens: int) -> GenerationParams:
    """The chat's sampling options for one generation; a chat that fixed its seed wants the
    same reply from the same history (repeatable)."""
    return GenerationParams(
        **{**settings.sampling(), "seed": seed, "max_tokens": max_tokens},
        repeatable=settings.seed != RANDOM_SEED,
    )


@dataclass(slots=True)
class Turn:
    """A turn in flight: its message, backend and the row being generated."""

    ctx: TurnSource
    backend: Backend
    reply_id: int  # the row being generated (a tool round moves it on)
    before: int  # the history before this message id goes into the prompt
    new: Message | None  # the user message (None: it is the last history row, /retry)
    seed: int | None
    replaces: int | None = None
    forced: str | None = None  # the tool the first round must call (/tool NAME)
    image_seconds: float = 0.0  # decoding (and describing) the message's pictures
    shown_from: int = 0  # the reply row's text starts here in the stream (after tool rounds)
    tools: RoundState = field(default_factory=RoundState)

    def text(self, stream: ReplyStream) -> str:
        """The text of the row being generated."""
        return stream.text[self.shown_from :]


class Generation:
    """Streams and stores a turn's reply rows."""

    def __init__(
        self,
        store: Callable[[], Repository],
        metrics: Metrics,
        checkpoint_interval: float,
        retrieval: Retrieval | None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._checkpoint_interval = checkpoint_interval
        self._retrieval = retrieval

    async def stream(
        self,
        turn: Turn,
        messages: list[Message],
        settings: ChatSettings,
        seed: int,
        stream: ReplyStream,
        offer: ToolOffer,
        choice: str,
    ) -> tuple[Usage | None, tuple[ToolCall, ...]]:
        """Generate into stream, checkpointing the reply row as it grows; the usage, and the
        calls the model made (if any)."""
        backend, metrics = turn.backend, self._metrics
        params = generation_params(settings, seed, settings.max_tokens)
        interval = self._checkpoint_interval
        started = time.perf_counter()
        saved = started
        shown: object = None  # the platform message of the last checkpoint
        recoverable = isinstance(turn.ctx.target, RecoverableTarget)
        first: float | None = None
        usage: Usage | None = None
        chat_name = str(turn.ctx.chat.key)
        calls: tuple[ToolCall, ...] = ()
        tools = offer.specs if choice != "none" else ()
        async for chunk in backend.stream(
            messages, params, cache_key=chat_name, tools=tools, tool_choice=choice
        ):
            if chunk.text:
                if first is None:
                    first = time.perf_counter()
                    metrics.ttft.labels(backend.name).observe(first - started)
                await stream.append(chunk.text)
                # Also when the reply's end moves to a new platform message that can be found
                # again, so that a crash right after it can still mark that message as cut.
                moved = stream.last_handle is not shown and recoverable
                if time.perf_counter() - saved >= interval or moved:
                    saved = time.perf_counter()
                    shown = stream.last_handle
                    ref = self.reference(turn, stream)
                    await self._store().checkpoint(turn.reply_id, turn.text(stream), ref)
            if chunk.usage is not None:
                usage = chunk.usage
            calls = chunk.tool_calls or calls
        if usage is not None:
            rate = generation_speed(usage.completion_tokens, first, time.perf_counter())
            if rate is not None:
                metrics.tokens_per_second.labels(backend.name).observe(rate)
        return usage, calls

    @staticmethod
    def reference(turn: Turn, stream: ReplyStream) -> str | None:
        target = turn.ctx.target
        handle = stream.last_handle
        if handle is None or not isinstance(target, RecoverableTarget):
            return None
        return target.reference(handle)

    async def finish(
        self,
        turn: Turn,
        stream: ReplyStream,
        status: MessageStatus,
        seed: int,
        usage: Usage | None = None,
    ) -> None:
        """Store the reply, with its figures for /stats (kept across restarts)."""
        repo = self._store()
        chat_id, text, rounds = turn.ctx.chat.id, turn.text(stream), turn.tools
        for row_id in rounds.pending:  # a tool that never returned (cancelled, failed)
            interrupted = NewMessage(Role.TOOL, None, "", 0, "", MessageStatus.INTERRUPTED)
            await repo.finish_result(chat_id, row_id, interrupted)
        if turn.replaces is not None and (status != MessageStatus.COMPLETE or not text):
            await repo.discard_reply(chat_id, turn.reply_id)  # a failed retry
            return
        reply: Message = {"role": "assistant", "content": text}
        tokens, counted_by = await count_reply(turn.backend, reply)
        stats = None if usage is None else {"backend": turn.backend.name, **usage.to_json()}
        if stats is not None and rounds.rounds:
            stats |= {"tool_calls": rounds.calls, "tool_seconds": rounds.seconds}
        if stats is not None and turn.image_seconds:
            stats["image_seconds"] = turn.image_seconds
        row = NewMessage(Role.ASSISTANT, None, text, tokens, counted_by, status, seed, stats)
        ref = self.reference(turn, stream)
        await repo.finish_turn(chat_id, turn.reply_id, row, ref, replaces=turn.replaces)
        if self._retrieval is not None:
            self._retrieval.stored()  # index the turn's messages, off this path
