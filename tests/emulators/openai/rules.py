"""The request rules of the OpenAI emulator's chat endpoint (OpenAI's API reference,
chat/create), beyond tools (tools.py)."""

from __future__ import annotations

from typing import Any

from tests.emulators.openai.images import parts_problem

__all__ = ["invalid", "unrecognized"]

_ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})
# The request body of POST /v1/chat/completions in OpenAI's API reference (chat/create).
_API_FIELDS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities",
    "n", "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop",
    "store", "stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs",
    "top_p", "user", "verbosity", "web_search_options",
})  # fmt: skip


def invalid(body: Any) -> str | None:
    """What is wrong with a chat request, in the API's words, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must contain at least one message."
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"Invalid value for 'messages[{i}].role'."
        content = message.get("content")
        if isinstance(content, list):
            problem = parts_problem(i, message)
            if problem:
                return problem
        elif not isinstance(content, str):
            return f"Invalid type for 'messages[{i}].content': expected a string or an array."
    if body.get("stream_options") is not None and not body.get("stream"):
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    return None


def unrecognized(
    body: dict[str, Any], accepted: frozenset[str], unknown: frozenset[str]
) -> str | None:
    """OpenAI's refusal of the first argument it does not define, or None."""
    for name in body:
        if name in unknown or (name not in _API_FIELDS and name not in accepted):
            return f"Unrecognized request argument supplied: {name}"
    return None
