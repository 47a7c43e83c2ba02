"""The `[tools]` section: how a turn runs the tools the model calls, and within what bounds.

Which tools exist comes from the plugins (commands declared with `tool=True`) and from
`[mcp.servers.NAME]`; whether one is on in a chat is that chat's setting (/tools on|off NAME).
"""

from __future__ import annotations

from pydantic import Field

from botkit.config.section import Section

__all__ = ["ToolsConfig"]


class ToolsConfig(Section):
    """Bounds on a turn's tool calls."""

    # false: no tool is offered to any model (the commands still work as commands).
    enabled: bool = True
    # Rounds of model -> calls -> results per turn; the round after the last may not call,
    # so the model answers with what it has.
    max_rounds: int = Field(default=3, ge=1, le=10)
    # Calls the model may make in one round (more are answered with an error, not run).
    max_calls: int = Field(default=4, ge=1, le=32)
    # Seconds one call may run; then it is given up and the model is told it timed out.
    timeout: float = Field(default=20.0, gt=0, le=600, allow_inf_nan=False)
    # Characters of a result the model is given; the rest is cut, with a note saying so.
    max_result_chars: int = Field(default=4000, ge=100, le=1_000_000)
    # Calls of one tool per chat and minute (0: no limit), as the commands' limiter counts.
    per_minute: int = Field(default=20, ge=0, le=10_000)
    # Seconds a tool that needs confirmation waits for /confirm in the chat.
    confirm_timeout: float = Field(default=120.0, gt=0, le=3600, allow_inf_nan=False)
