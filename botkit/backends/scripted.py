"""A scripted backend that replies with queued texts: a fake for tests, shipped with botkit.

`backend.enqueue("text")` makes the next reply exactly that text, streamed in small chunks;
with nothing queued it echoes the last user message. Token counts are one per four characters.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Sequence

from botkit.backends.base import BackendInfo, Chunk, GenerationParams, Message, Usage

__all__ = ["ScriptedBackend"]


class ScriptedBackend:
    """Replies from a queue of texts."""

    tokenizer_id = "scripted"

    def __init__(self, name: str = "scripted", context_window: int = 4096, chunk: int = 40) -> None:
        self.name = name
        self._window = context_window
        self._chunk = chunk
        self._replies: deque[str] = deque()
        self.prompts: list[list[Message]] = []
        self.max_parallel = 1
        self.ignored_settings: frozenset[str] = frozenset()

    @property
    def context_window(self) -> int:
        """The configured window."""
        return self._window

    def enqueue(self, *texts: str) -> None:
        """Queue replies, in order."""
        self._replies.extend(texts)

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""

    async def message_tokens(self, message: Message) -> int:
        """One token per four characters, plus four for the framing."""
        return math.ceil(len(message["content"]) / 4) + 4

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """The sum over messages, plus the generation prompt."""
        return sum([await self.message_tokens(m) for m in messages]) + 4

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams, *, cache_key: str
    ) -> AsyncIterator[Chunk]:
        """Stream the next queued text (or an echo) in chunks."""
        self.prompts.append(list(messages))
        text = self._replies.popleft() if self._replies else f"echo: {messages[-1]['content']}"
        for start in range(0, len(text), self._chunk):
            yield Chunk(text[start : start + self._chunk])
        usage = Usage(len(messages) * 8, math.ceil(len(text) / 4), "stop")  # a fake count
        yield Chunk("", usage=usage)

    async def info(self) -> BackendInfo:
        """A description of the fake."""
        return BackendInfo(
            self.name, "scripted", "scripted replies", None, None, self._window, None, None
        )
