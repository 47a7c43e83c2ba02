"""A scripted backend that replies with queued texts: a fake for tests, shipped with botkit.

`backend.enqueue("text")` makes the next reply exactly that text, streamed in small chunks;
`backend.enqueue_calls(ToolCall(...))` makes the next reply call those tools; with nothing
queued it echoes the last message. Token counts are one per four characters.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import AsyncIterator, Sequence

from botkit.backends.base import (
    BackendError,
    BackendInfo,
    Chunk,
    GenerationParams,
    Message,
    Usage,
)
from botkit.images.spec import Image
from botkit.tools.spec import ToolCall, ToolChoice, ToolSpec

__all__ = ["ScriptedBackend"]


class ScriptedBackend:
    """Replies from a queue of texts and tool calls."""

    tokenizer_id = "scripted"

    def __init__(self, name: str = "scripted", context_window: int = 4096, chunk: int = 40) -> None:
        self.name = name
        self._window = context_window
        self._chunk = chunk
        self._replies: deque[str | tuple[ToolCall, ...]] = deque()
        self.prompts: list[list[Message]] = []
        # The tools each stream() was given, and its tool_choice (for tests to check).
        self.tool_requests: list[tuple[tuple[ToolSpec, ...], ToolChoice]] = []
        self.max_parallel = 1
        self.ignored_settings: frozenset[str] = frozenset()
        # Like a model that was not trained to call tools: a test that wants calls sets None.
        self.tools_unsupported: str | None = "the scripted model decides no calls itself"
        # Like a text-only model: a test that sends pictures to it sets None.
        self.vision_unsupported: str | None = "the scripted model cannot see images"
        self.image_cost = 64  # tokens per picture

    @property
    def context_window(self) -> int:
        """The configured window."""
        return self._window

    def enqueue(self, *texts: str) -> None:
        """Queue replies, in order."""
        self._replies.extend(texts)

    def enqueue_calls(self, *calls: ToolCall) -> None:
        """Queue one reply that calls these tools."""
        self._replies.append(tuple(calls))

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""

    async def message_tokens(self, message: Message) -> int:
        """One token per four characters (tool calls included), plus four for the framing."""
        calls = message.get("tool_calls")
        size = len(message["content"]) + (len(json.dumps(calls)) if calls else 0)
        return math.ceil(size / 4) + 4

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """The sum over messages, plus the generation prompt."""
        return sum([await self.message_tokens(m) for m in messages]) + 4

    async def tool_support(self) -> str | None:
        """tools_unsupported (None once a test says the model calls tools itself)."""
        return self.tools_unsupported

    async def vision_support(self) -> str | None:
        """vision_unsupported (None once a test says the model can see)."""
        return self.vision_unsupported

    async def image_tokens(self, image: Image) -> int:
        """image_cost, whatever the picture."""
        return self.image_cost

    async def tool_tokens(self, tools: Sequence[ToolSpec]) -> int:
        """One token per four characters of the declarations' JSON."""
        if not tools:
            return 0
        return math.ceil(len(json.dumps([t.to_openai() for t in tools])) / 4)

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        """Stream the next queued text (or an echo) in chunks, or the queued calls."""
        if self.vision_unsupported and any(m.get("images") for m in messages):
            raise BackendError(f"images cannot be sent to this model: {self.vision_unsupported}")
        self.prompts.append(list(messages))
        self.tool_requests.append((tuple(tools), tool_choice))
        queued = self._replies.popleft() if self._replies else None
        if isinstance(queued, tuple):
            usage = Usage(len(messages) * 8, 4 * len(queued), "tool_calls")
            yield Chunk("", usage=usage, tool_calls=queued)
            return
        text = queued if queued is not None else f"echo: {messages[-1]['content']}"
        for start in range(0, len(text), self._chunk):
            yield Chunk(text[start : start + self._chunk])
        usage = Usage(len(messages) * 8, math.ceil(len(text) / 4), "stop")  # a fake count
        yield Chunk("", usage=usage)

    async def info(self) -> BackendInfo:
        """A description of the fake."""
        return BackendInfo(
            self.name, "scripted", "scripted replies", None, None, self._window, None, None
        )
