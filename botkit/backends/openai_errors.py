"""What an OpenAI-compatible server's error says: its message, the request argument it
refused, the context length it names when a prompt did not fit, and the chat's message for it.

Each server words these its own way; the forms read here, with where they come from:

- The refused argument. OpenAI's error object has a structured `param`; api.openai.com leaves
  it null for an argument it does not define and says only "Unrecognized request argument
  supplied: top_k" (the whole message; quoted with its body in github.com/nashsu/llm_wiki
  issue 336, coroot/coroot issue 698). So: `param`, or that exact sentence as the whole
  message; never a name found somewhere in the text, which may echo the user's own words.
- The context length, when a prompt does not fit:
  - vLLM: 400 "This model's maximum context length is 2048 tokens. However, you requested
    ... tokens (... in the messages, ... in the completion). ..." (vllm-project/vllm,
    vllm/entrypoints/openai/serving_engine.py, `_validate_prompt_and_tokenize`); newer
    versions may begin "'max_tokens' or 'max_completion_tokens' is too large: 2000. " before
    the same words. llama_cpp.server reformats its own refusal into the same sentence
    (llama_cpp/server/errors.py, `context_length_exceeded`, code "context_length_exceeded").
  - llama_cpp (llama-cpp-python) itself: "Requested tokens (731) exceed context window of 512"
    (llama_cpp/llama.py, `_create_completion`), seen as is when llama_cpp.server answers 500.
  - llama.cpp's llama-server: type "exceed_context_size_error" with the numbers as fields,
    `"n_prompt_tokens": 1407, "n_ctx": 256` (ggml-org/llama.cpp pull request 15780, at first
    with code 500 and the message "the request exceeds the available context size. try
    increasing the context size or enable context shift"); later 400 "request (5274 tokens)
    exceeds the available context size (4096 tokens), try increasing it".
  Each wording is read only where the message begins with it (the server's own sentence), so
  a message that quotes the user's text cannot set the window.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai

from botkit.backends.base import BackendBusy, BackendError, BackendUnavailable
from botkit.config import OpenAIConfig

__all__ = ["error_message", "mapped_error", "named_window", "refused_argument"]

_UNRECOGNIZED = re.compile(r"Unrecognized request argument supplied: (\w+)")
_WINDOW_WORDINGS = (
    re.compile(  # vLLM, llama_cpp.server
        r"(?:'max_tokens' or 'max_completion_tokens' is too large: \d+\. )?"
        r"This model's maximum context length is (\d+) tokens"
    ),
    re.compile(r"Requested tokens \(\d+\) exceed context window of (\d+)"),  # llama_cpp
    re.compile(r"request \(\d+ tokens\) exceeds the available context size \((\d+) tokens\)"),
)


def _body(exc: openai.APIError) -> dict[str, Any]:
    # The client hands over the error object ({"error": {...}} unwrapped) or the whole body
    # where there is no such envelope (vLLM's ErrorResponse).
    return exc.body if isinstance(exc.body, dict) else {}


def error_message(exc: openai.APIError) -> str:
    """The server's own words (the error object's message, or FastAPI's detail), shortened."""
    body = _body(exc)
    message = body.get("message") or body.get("detail")
    if isinstance(message, str):
        return message[:300]
    return exc.message[:300]


def refused_argument(exc: openai.APIError) -> str | None:
    """The request argument the server refused by name, or None."""
    if isinstance(exc.param, str) and exc.param:
        return exc.param
    message = _body(exc).get("message")
    found = _UNRECOGNIZED.fullmatch(message.strip()) if isinstance(message, str) else None
    return found[1] if found else None


def named_window(exc: openai.APIError) -> int | None:
    """The context length a refusal names (the prompt did not fit), or None."""
    body = _body(exc)
    n_ctx = body.get("n_ctx")
    if body.get("type") == "exceed_context_size_error" and isinstance(n_ctx, int) and n_ctx > 0:
        return n_ctx
    message = body.get("message")
    if not isinstance(message, str):
        return None
    for wording in _WINDOW_WORDINGS:
        found = wording.match(message.strip())
        if found and int(found[1]) > 0:
            return int(found[1])
    return None


def mapped_error(exc: BaseException, cfg: OpenAIConfig, where: str, has_key: bool) -> BackendError:
    """A client or transport error (not a 404: the model's absence is the backend's to tell)
    as a message fit for the chat (never the key)."""
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        place = f"${cfg.api_key_env} or the systemd credential {cfg.credential!r}"
        what = "refused the API key" if has_key else "needs an API key"
        return BackendUnavailable(f"{where} {what} ({exc.status_code}): set the key in {place}")
    if isinstance(exc, openai.RateLimitError) or (
        isinstance(exc, openai.APIStatusError) and exc.status_code == 503
    ):
        return BackendBusy(
            f"{where} is busy ({exc.status_code}, still after {cfg.max_retries} retries); "
            "try again in a moment"
        )
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        limits = f"{cfg.connect_timeout:g} s to connect, {cfg.read_timeout:g} s to read"
        return BackendUnavailable(f"{where} did not answer in time ({limits})")
    if isinstance(exc, openai.APIConnectionError):
        return BackendUnavailable(f"{where} is not reachable: is it running?")
    if isinstance(exc, openai.APIStatusError):
        return BackendUnavailable(f"{where} answered {exc.status_code}: {error_message(exc)}")
    return BackendUnavailable(f"the connection to {where} failed: {type(exc).__name__}")
