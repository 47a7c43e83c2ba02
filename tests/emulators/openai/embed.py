"""POST /v1/embeddings for the OpenAI emulator, per OpenAI's API reference
(https://platform.openai.com/docs/api-reference/embeddings/create):

- `Authorization: Bearer <key>` when a key is set (401 `invalid_api_key` otherwise, as for chat).
- `model` and `input` are required. `input` is a string or an array of strings (arrays of
  token ids are allowed too); an empty string, an empty array or more than 2048 items is 400
  (`invalid_request_error`, `param: "input"`). An unknown model: 404 `model_not_found`.
- `encoding_format` is "float" (the default) or "base64" (the float32 bytes, little-endian,
  base64-encoded: what the `openai` client asks for unless told otherwise and decodes); any
  other value is 400. A field the API does not define is 400 "Unrecognized request argument
  supplied: NAME", as for chat.
- The reply: `{"object": "list", "data": [{"object": "embedding", "index": i, "embedding":
  ...}], "model", "usage": {"prompt_tokens", "total_tokens"}}`, vectors of length 1.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from tests.emulators.embeddings import misbehave, normalised

if TYPE_CHECKING:
    from tests.emulators.openai.server import OpenAIEmulator

_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user"})
_MAX_INPUTS = 2048


def _error(status: int, message: str, code: str | None, param: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


def _texts(value: Any) -> list[str] | str:
    """The input as a list of texts, or what is wrong with it."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return "'input' must be a non-empty string or array"
    if len(value) > _MAX_INPUTS:
        return f"'input' may have at most {_MAX_INPUTS} items, it has {len(value)}"
    if not all(isinstance(v, str) for v in value):
        return "'input' must be an array of strings (token arrays are not emulated)"
    if any(v == "" for v in value):
        return "'$.input' is invalid: an input cannot be an empty string"
    return list(value)


async def embeddings(emulator: OpenAIEmulator, request: web.Request) -> web.Response:
    """The /v1/embeddings handler."""
    refused = emulator._refused(request)
    if refused is not None:
        return refused
    try:
        body: Any = await request.json()
    except json.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.", None)
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.", None)
    emulator.embed_records.append(body)
    extra = sorted(set(body) - _FIELDS)
    if extra:
        return _error(400, f"Unrecognized request argument supplied: {extra[0]}", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _error(400, "you must provide a model parameter", None, "model")
    texts = _texts(body.get("input"))
    if isinstance(texts, str):
        return _error(400, texts, None, "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return _error(
            400, f"'{encoding}' is not one of ['float', 'base64']", None, "encoding_format"
        )
    if model not in emulator.models:
        return _error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "model_not_found",
        )

    fault = emulator.embed_fault
    if fault == "hang":
        await emulator._released.wait()
        raise asyncio.CancelledError  # the emulator is stopping; the client is gone
    if fault == "500":
        return _error(500, "The server had an error while processing your request.", None)
    if fault == "garbage":
        return web.Response(body=b'{"object": "list", "data": [', content_type="application/json")

    rows, tokens = await emulator.embedding_model.vectors(texts)
    rows = misbehave([normalised(r) for r in rows], fault)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(np.asarray(r, "<f4").tobytes()).decode()
            if encoding == "base64"
            else r,
        }
        for i, r in enumerate(rows)
    ]
    reply = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return web.Response(body=json.dumps(reply).encode(), content_type="application/json")
