"""One streamed reply from an OpenAI-compatible server: its text, its timing, the server's
figures, whether the server has run past the max_tokens it was sent, and its time limits.

A server that ignores max_tokens streams until the model stops on its own, which may be never
(one sent 10,395 chunks in 12 s, 33 platform messages): the reply is cut a little past
max_tokens, the margin only absorbing servers that count differently. A server that sends only
SSE keep-alive comments keeps the connection's read timeout from ever firing: the wait for the
next chunk is timed here, where comments are not chunks, and the whole reply has a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal, TypeVar

from botkit.backends.base import BackendError, BackendUnavailable, Usage, generation_speed

__all__ = ["ReplyClock", "StreamedReply", "server_usage"]

T = TypeVar("T")


def _limit(max_tokens: int) -> int:
    """Tokens a reply may run to before it is cut: max_tokens and a tenth, at least 8 more."""
    return max_tokens + max(8, max_tokens // 10)


class StreamedReply:
    """What a stream brought: the text, when its first piece came, the server's figures."""

    def __init__(self, sent: float, max_tokens: int) -> None:
        self.sent = sent
        self.limit = _limit(max_tokens)
        self.first: float | None = None
        self.pieces: list[str] = []
        self.usage: Any = None
        self.timings: dict[str, Any] = {}

    def take(self, part: Any) -> None:
        """Note a chunk's figures (usage, llama-server's timings)."""
        if part.usage is not None:
            self.usage = part.usage
        timings = (part.model_extra or {}).get("timings")  # llama-server's own figures
        if isinstance(timings, dict):
            self.timings = timings

    def text(self, piece: str) -> None:
        """Note a piece of the reply's text."""
        if self.first is None:
            self.first = time.perf_counter()
        self.pieces.append(piece)

    @property
    def generated(self) -> int:
        """Tokens generated so far, as far as the stream tells: the larger of the server's own
        count, where it sends usage during the stream (vLLM's continuous usage stats), and the
        chunks with text. Each of those holds at least one token on llama.cpp's, vLLM's and
        OpenAI's servers (a token whose text is incomplete UTF-8, or may begin a stop string,
        comes later in one chunk with the next), so neither runs ahead of a server that keeps
        to max_tokens."""
        reported = getattr(self.usage, "completion_tokens", None)
        return max(reported if isinstance(reported, int) else 0, len(self.pieces))

    @property
    def runaway(self) -> bool:
        """The server has gone past max_tokens by the whole margin: the reply ends here."""
        return self.generated >= self.limit


class ReplyClock:
    """The time limits of one reply: read_timeout for each next chunk, reply_timeout for all."""

    def __init__(self, where: str, read_timeout: float, reply_timeout: float) -> None:
        self._where = where
        self._read_timeout = read_timeout
        self._reply_timeout = reply_timeout
        self.deadline = asyncio.get_running_loop().time() + reply_timeout

    def overdue(self) -> BackendError:
        """The error of a reply past its deadline."""
        return BackendError(
            f"{self._where} did not finish the reply within {self._reply_timeout:g} s "
            "(reply_timeout): it was cut there"
        )

    async def within(self, call: Awaitable[T]) -> T:
        """call's result, before the deadline."""
        limit = asyncio.timeout_at(self.deadline)
        try:
            async with limit:
                return await call
        except TimeoutError:
            if not limit.expired():
                raise
            raise self.overdue() from None

    async def next(self, parts: AsyncIterator[T]) -> T | None:
        """The stream's next chunk, or None at its end."""
        left = self.deadline - asyncio.get_running_loop().time()
        wait = min(self._read_timeout, left)
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                return await anext(parts)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if wait >= left:
                raise self.overdue() from None
            raise BackendUnavailable(
                f"{self._where} sent no part of the reply for {self._read_timeout:g} s "
                "(read_timeout)"
            ) from None


def server_usage(
    reply: StreamedReply,
    prompt: int,
    completion: int,
    stop: Literal["stop", "length", "tool_calls"],
    end: float,
) -> Usage:
    """A reply's Usage: the cache and timing figures the server sent where it sent them
    (OpenAI's usage.prompt_tokens_details.cached_tokens; llama-server's timings), else those
    measured here."""
    details = getattr(reply.usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    if cached is None:
        cached = _number(reply.timings.get("cache_n"))
    prompt_ms = _number(reply.timings.get("prompt_ms"))
    speed = _number(reply.timings.get("predicted_per_second"))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        stop_reason=stop,
        cached_prompt_tokens=None if cached is None else int(cached),
        prefill_seconds=None if prompt_ms is None else prompt_ms / 1000,
        first_token_seconds=None if reply.first is None else reply.first - reply.sent,
        tokens_per_second=speed or generation_speed(completion, reply.first, end),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None
