"""Tool calling for the OpenAI emulator: the request rules about tools, and scripted replies
that call tools, streamed in fragments of a chosen size (or malformed on purpose).

Rules, as api.openai.com applies them (each a 400 `invalid_request_error`):
- `tools[].type` is "function" and `tools[].function.name` matches ^[a-zA-Z0-9_-]{1,64}$ (API
  reference, chat/create, "tools.function.name": "Must be a-z, A-Z, 0-9, or contain
  underscores and dashes, with a maximum length of 64").
- `tool_choice` only with `tools` ("'tool_choice' is only allowed when 'tools' are
  specified"), and a named choice must be one of them.
- A `tool` message answers a call of the assistant message just before it (with the tool
  messages of that turn between): "messages with role 'tool' must be a response to a
  preceeding message with 'tool_calls'" (the API's own spelling); every call of an assistant
  message gets its tool message before the next other message ("An assistant message with
  'tool_calls' must be followed by tool messages responding to each 'tool_call_id'").
  Both as quoted in openai/openai-python issues and the community forum.
- An assistant message's `tool_calls` are `{id, type: "function", function: {name,
  arguments}}`, arguments a string.

The stream of a call (API reference, "The chat completion chunk object"): the first fragment
of each call carries `index`, `id`, `type` and `function.name` with empty arguments; the rest
carry `index` and pieces of `function.arguments`; then `finish_reason: "tool_calls"`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

if TYPE_CHECKING:
    from tests.emulators.openai.server import OpenAIEmulator

__all__ = ["ToolReply", "fragments", "tool_chat", "tools_problem", "whole_calls"]

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass
class ToolReply:
    """A scripted reply that calls tools (served to the next request that carries tools).

    calls: (id, name, arguments) each, id None to leave it out; text: said before the calls;
    piece: characters of arguments per fragment; interleave: the calls' fragments in turn
    rather than one call after another; raw: these fragment dicts sent as they are instead
    (malformed streams); ending: how the stream ends after the fragments: "finish"
    (finish_reason "tool_calls" and [DONE]), "silent" (no finish_reason, then [DONE]), "cut"
    (the connection drops after `after` fragments), "hang" (nothing more after `after`
    fragments, until the emulator stops); finish_reason: what the last chunk says.
    """

    calls: list[tuple[str | None, str, str]] = field(default_factory=list)
    text: str = ""
    piece: int = 8
    interleave: bool = False
    raw: list[dict[str, Any]] | None = None
    ending: Literal["finish", "silent", "cut", "hang"] = "finish"
    after: int = 0
    finish_reason: str = "tool_calls"


def fragments(reply: ToolReply) -> list[dict[str, Any]]:
    """The `delta.tool_calls` items of a reply, in the order they are sent (one a chunk)."""
    if reply.raw is not None:
        return reply.raw
    per_call: list[list[dict[str, Any]]] = []
    for index, (call_id, name, arguments) in enumerate(reply.calls):
        first: dict[str, Any] = {"index": index, "type": "function",
                                 "function": {"name": name, "arguments": ""}}  # fmt: skip
        if call_id is not None:
            first["id"] = call_id
        pieces = [arguments[i : i + reply.piece] for i in range(0, len(arguments), reply.piece)]
        per_call.append([first, *({"index": index, "function": {"arguments": p}} for p in pieces)])
    if not reply.interleave:
        return [f for call in per_call for f in call]
    out: list[dict[str, Any]] = []
    for turn in range(max((len(c) for c in per_call), default=0)):
        out.extend(call[turn] for call in per_call if turn < len(call))
    return out


def whole_calls(reply: ToolReply) -> list[dict[str, Any]]:
    """The calls of a reply as a non-streamed message carries them."""
    return [{"id": call_id or f"call_{i}", "type": "function",
             "function": {"name": name, "arguments": arguments}}
            for i, (call_id, name, arguments) in enumerate(reply.calls)]  # fmt: skip


def _message_problem(messages: list[dict[str, Any]]) -> str | None:
    pending: set[str] = set()
    answerable = False  # a tool message may come here (after calls, or their other results)
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not answerable or call_id not in pending:
                return ("Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.")  # fmt: skip
            pending.discard(call_id)
            continue
        if pending:
            return ("An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not "
                    f"have response messages: {', '.join(sorted(pending))}")  # fmt: skip
        answerable = False
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if role != "assistant" or not isinstance(calls, list):
            return f"Invalid value for 'messages[{i}].tool_calls'."
        for j, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if (not isinstance(call.get("id"), str) or call.get("type") != "function"
                    or not isinstance(function, dict) or not isinstance(function.get("name"), str)
                    or not isinstance(function.get("arguments"), str)):  # fmt: skip
                return f"Invalid value for 'messages[{i}].tool_calls[{j}]'."
            pending.add(call["id"])
        answerable = True
    if pending:
        return ("An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(pending))}")  # fmt: skip
    return None


def tools_problem(body: dict[str, Any]) -> tuple[str, str | None] | None:
    """What is wrong with a request's tools, tool_choice or tool messages, and the `param` the
    API names, or None."""
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            return "Invalid type for 'tools': expected an array.", "tools"
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(function, dict):
                return f"Invalid value for 'tools[{i}].type'.", f"tools[{i}].type"
            name = function.get("name")
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                return (f"Invalid 'tools[{i}].function.name': string does not match pattern. "
                        "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                        f"tools[{i}].function.name")  # fmt: skip
            names.append(name)
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            return ("Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                    "'tools' are specified.", "tool_choice")  # fmt: skip
        if isinstance(choice, dict):
            named = (choice.get("function") or {}).get("name")
            if choice.get("type") != "function" or named not in names:
                return (f"Invalid value for 'tool_choice': function {named!r} is not among "
                        "'tools'.", "tool_choice")  # fmt: skip
        elif choice not in ("auto", "none", "required"):
            return "Invalid value for 'tool_choice'.", "tool_choice"
    problem = _message_problem(body["messages"])
    return None if problem is None else (problem, "messages")


async def tool_chat(emulator: OpenAIEmulator, request: web.Request,
                    body: dict[str, Any]) -> web.StreamResponse | None:  # fmt: skip
    """The answer to a chat request about tools: a refusal (of tools as such, or of a request
    that breaks the rules above), a scripted call, or None (an ordinary reply follows)."""
    if body.get("tools") and emulator.tools_refusal == "jinja":
        # llama-server without --jinja (tools/server/utils.hpp): a std::runtime_error, 500.
        error = {"code": 500, "message": "tools param requires --jinja flag",
                 "type": "server_error"}  # fmt: skip
        return web.json_response({"error": error}, status=500)
    problem = tools_problem(body)
    if problem is not None:
        error = {"message": problem[0], "type": "invalid_request_error", "param": problem[1],
                 "code": None}  # fmt: skip
        return web.json_response({"error": error}, status=400)
    if not body.get("tools") or body.get("tool_choice") == "none" or not emulator.tool_replies:
        return None
    reply = emulator.tool_replies.pop(0)
    emulator.tool_records.append(body)
    if not body.get("stream"):
        message = {"role": "assistant", "content": reply.text or None,
                   "tool_calls": whole_calls(reply)}  # fmt: skip
        return web.json_response({
            "id": "chatcmpl-emulated", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })  # fmt: skip
    return await _stream_calls(emulator, request, body, reply)


async def _stream_calls(emulator: OpenAIEmulator, request: web.Request, body: dict[str, Any],
                        reply: ToolReply) -> web.StreamResponse:  # fmt: skip
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def event(delta: dict[str, Any], finish: str | None = None) -> None:
        chunk = {"id": "chatcmpl-emulated", "object": "chat.completion.chunk",
                 "created": int(time.time()), "model": body["model"],
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await event({"role": "assistant", "content": reply.text or None})
    for n, item in enumerate(fragments(reply)):
        if reply.ending in ("cut", "hang") and n >= reply.after:
            break
        await event({"tool_calls": [item]})
    if reply.ending == "cut":
        assert request.transport is not None
        request.transport.close()  # the server died mid-arguments
        return response
    if reply.ending == "hang":
        await emulator._released.wait()
        raise asyncio.CancelledError  # the emulator is stopping; the client is gone
    if reply.ending == "finish":
        await event({}, reply.finish_reason)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
