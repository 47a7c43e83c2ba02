"""The Toolbox: what a turn asks of the tools (which it may offer the model, and running a
call), as a Protocol so that the conversation knows nothing of plugins, commands or MCP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from botkit.backends.base import Backend
from botkit.core.turn_source import TurnSource
from botkit.tools.spec import ToolCall, ToolResult, ToolSpec

__all__ = ["ToolOffer", "Toolbox"]


@dataclass(frozen=True, slots=True)
class ToolOffer:
    """The tools a turn offers its model, what their declarations cost, and, when none are
    offered, why (shown in /tools, /context and /model). forced: the tool the first round
    must call (/tool NAME); auto: the model may decide to call after that."""

    specs: tuple[ToolSpec, ...] = ()
    tokens: int = 0
    note: str | None = None
    forced: str | None = None
    auto: bool = True


class Toolbox(Protocol):
    """The tools of a bot, as a turn uses them."""

    @property
    def max_rounds(self) -> int:
        """Rounds of calls per turn ([tools] max_rounds)."""

    @property
    def max_calls(self) -> int:
        """Calls per round ([tools] max_calls)."""

    async def offer(
        self, ctx: TurnSource, backend: Backend, forced: str | None = None
    ) -> ToolOffer:
        """The tools on in ctx's chat that backend's model can be given; forced: the one tool
        the first round must call."""
        ...

    async def run(
        self,
        ctx: TurnSource,
        call: ToolCall,
        offered: Sequence[ToolSpec],
        notify: Callable[[str], Awaitable[None]] | None = None,
    ) -> ToolResult:
        """Run one call (validated, rate-limited, confirmed where the tool asks, within its
        timeout, its result cut to the size limit). Never raises for the tool's faults: the
        result says what went wrong, for the model and the chat. notify shows a line in the
        reply (a confirmation's question)."""
        ...
