"""The figures of one finished reply from an OpenAI-compatible server, and what botkit learns
from them: the server's prompt count teaches the text estimate's ratio (a server without a
tokenizer) and an image's cost (openai_vision.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import httpx
import openai

from botkit.backends.base import Message, Usage
from botkit.backends.image_cost import image_count
from botkit.backends.openai_reply import StreamedReply, server_usage
from botkit.backends.openai_vision import ServerVision
from botkit.backends.server_tokens import ServerTokens
from botkit.tools.spec import ToolCall

__all__ = ["reply_usage"]


async def _observe(
    tokens: ServerTokens, vision: ServerVision, messages: Sequence[Message], reported: int
) -> None:
    try:
        text = await tokens.prompt(messages) if image_count(messages) else 0
    except (openai.APIError, httpx.TransportError):
        return  # the reply is whole; only this lesson is lost
    reported_text = vision.text_part(messages, reported, text)
    if reported_text is not None:
        tokens.observe(messages, reported_text)


async def reply_usage(
    tokens: ServerTokens,
    vision: ServerVision,
    messages: Sequence[Message],
    prompt: int,
    reply: StreamedReply,
    finish: str,
    calls: tuple[ToolCall, ...],
) -> Usage:
    """The server's figures where it sent them (usage with stream_options.include_usage;
    llama-server's timings), else counted and timed here. Calls end a reply as "tool_calls"
    whatever finish_reason the server gave (some say "stop"; arguments cut at "length" reach
    the core as the model wrote them, which tells the model)."""
    stop: Literal["stop", "length", "tool_calls"] = (
        "tool_calls" if calls else "length" if finish == "length" else "stop"
    )
    reported = reply.usage
    if reported is not None:
        await _observe(tokens, vision, messages, int(reported.prompt_tokens))
        prompt = int(reported.prompt_tokens)
        completion = int(reported.completion_tokens)
    else:
        try:
            written = "".join(reply.pieces) + "".join(c.name + c.arguments for c in calls)
            completion = await tokens.text(written)
        except (openai.APIError, httpx.TransportError):
            completion = 0  # the reply is complete; only its count is unknown
    return server_usage(reply, prompt, completion, stop, time.perf_counter())
