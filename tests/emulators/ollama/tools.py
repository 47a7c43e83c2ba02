"""Tool calling for the Ollama emulator: the capability check, the shape of tool turns in the
request, and scripted replies that call tools.

Rules, from Ollama's server (server/routes.go ChatHandler, server/images.go
CheckCapabilities, api/types.go):
- A request with `tools` for a model without the `tools` capability: 400 {"error":
  "<model> does not support tools"} (errCapabilities "does not support" joined with
  errCapabilityTools "tools", prefixed with the model's name; handleScheduleError maps it to
  400). Ollama says this before any streaming.
- A message's `tool_calls[].function.arguments` is a JSON object (api.ToolCallFunctionArguments,
  a map): anything else fails to decode, 400 with Go's json error. `tool_name` on a tool
  message names the tool (api.Message.ToolName). Unknown fields are ignored, as Go's decoder
  does: the emulator records them so a test can see what was sent.
- A reply's calls come in `message.tool_calls` of a chunk before the last, each
  `{"function": {"name", "arguments": {...}}}` (api.ToolCall; `index` since 0.9), then the
  last chunk with `done: true`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

if TYPE_CHECKING:
    from tests.emulators.ollama.server import EmulatedModel, OllamaEmulator

__all__ = ["OllamaToolReply", "tool_chat"]


@dataclass
class OllamaToolReply:
    """A scripted reply, served to the next chat request (with tools or not).

    calls: `message.tool_calls` as sent (malformed on purpose if a test wants); text: said
    before them; ending: "done" (the last chunk follows), "cut" (the connection drops after
    the calls), "hang" (nothing more until the emulator stops)."""

    calls: list[Any] = field(default_factory=list)
    text: str = ""
    ending: Literal["done", "cut", "hang"] = "done"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        content_type="application/json")  # fmt: skip


def _shape_problem(messages: Any) -> str | None:
    for message in messages if isinstance(messages, list) else []:
        for call in message.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments")
            if arguments is not None and not isinstance(arguments, dict):
                kind = "string" if isinstance(arguments, str) else type(arguments).__name__
                return (f"json: cannot unmarshal {kind} into Go struct field "
                        "ToolCallFunction.messages.tool_calls.function.arguments of type "
                        "api.ToolCallFunctionArguments")  # fmt: skip
    return None


async def tool_chat(emulator: OllamaEmulator, request: web.Request, body: dict[str, Any],
                    model: EmulatedModel) -> web.StreamResponse | None:  # fmt: skip
    """A refusal, a scripted reply, or None (the model generates the reply)."""
    problem = _shape_problem(body.get("messages"))
    if problem is not None:
        return _json({"error": problem}, 400)
    if body.get("tools") and "tools" not in model.capabilities:
        name = model.name if ":" in model.name else f"{model.name}:latest"
        return _json({"error": f"registry.ollama.ai/library/{name} does not support tools"}, 400)
    if not emulator.tool_replies:
        return None
    reply = emulator.tool_replies.pop(0)
    line = {"model": body["model"], "created_at": "2026-11-01T12:00:00Z", "done": False}
    final = {**line, "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 7,
             "prompt_eval_duration": 1_000_000, "eval_duration": 7_000_000}  # fmt: skip
    if body.get("stream") is False:
        message = {"role": "assistant", "content": reply.text, "tool_calls": reply.calls}
        return _json({**final, "message": message})
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    if reply.text:
        message = {"role": "assistant", "content": reply.text}
        await response.write(json.dumps({**line, "message": message}).encode() + b"\n")
    if reply.calls:
        message = {"role": "assistant", "content": "", "tool_calls": reply.calls}
        await response.write(json.dumps({**line, "message": message}).encode() + b"\n")
    if reply.ending == "cut":
        assert request.transport is not None
        request.transport.close()  # the daemon died after the calls
        return response
    if reply.ending == "hang":
        emulator.holding.set()
        await emulator._released.wait()
        raise asyncio.CancelledError  # the emulator is stopping; the client is gone
    await response.write(json.dumps(final).encode() + b"\n")
    await response.write_eof()
    return response
