"""A scripted backend the test steps through: it stops at a chosen chunk until the gate opens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from botkit.backends.base import Chunk, GenerationParams, Message
from botkit.backends.scripted import ScriptedBackend
from botkit.tools.spec import ToolChoice, ToolSpec


class GatedBackend(ScriptedBackend):
    """Streams its reply up to chunk `stop_at` (0: before any), sets `started`, and goes on only
    when the test opens `gate`. Anything a consumer does with chunk k happens before the backend
    is asked for chunk k+1, so `started` also means the chunks before it were handled."""

    def __init__(self, stop_at: int = 0, chunk: int = 40) -> None:
        super().__init__("local", chunk=chunk)
        self.stop_at = stop_at
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        index = 0
        async for chunk in super().stream(messages, params, cache_key=cache_key):
            if index == self.stop_at:
                self.started.set()
                await self.gate.wait()
            index += 1
            yield chunk
