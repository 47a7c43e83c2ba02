"""POST /api/embed for the Ollama emulator, as Ollama's server answers it.

Rules (ollama/ollama docs/api.md "Generate Embeddings", and server/routes.go EmbedHandler):
- No body: 400 {"error": "missing request body"}; a body that is not JSON: 400 with the
  parser's message.
- `input` is a string or a list of strings. A non-empty string is one text; an empty string
  or no input at all is none (200, `embeddings: []`: a request that only loads the model); a
  list is embedded item by item, empty strings too; a list with a non-string in it, or any
  other type: 400 {"error": "invalid input type"}.
- An unknown model: 404 {"error": "model 'NAME' not found"}.
- `truncate` (default true) cuts each input to the context; false and too long: 400 {"error":
  "the input length exceeds the context length"} (runner's wording).
- Each vector is L2-normalised (routes.go `normalize`), and `dimensions` cuts and normalises
  again. The reply: `model`, `embeddings` (a list of lists), `total_duration`,
  `load_duration` (nanoseconds), `prompt_eval_count` (tokens read).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.emulators.embeddings import misbehave, normalised

if TYPE_CHECKING:
    from tests.emulators.ollama.server import OllamaEmulator


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def embed(emulator: OllamaEmulator, request: web.Request) -> web.Response:
    """The /api/embed handler."""
    started = time.monotonic_ns()
    raw = await request.read()
    if not raw:
        return _error(400, "missing request body")
    try:
        body: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        return _error(400, str(exc))
    if not isinstance(body, dict):
        return _error(400, "json: cannot unmarshal into Go value of type api.EmbedRequest")
    emulator.embed_records.append(body)
    value = body.get("input")
    if isinstance(value, str):
        texts = [value] if value else []
    elif isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            return _error(400, "invalid input type")
        texts = list(value)
    elif value is None:
        texts = []
    else:
        return _error(400, "invalid input type")
    name = str(body.get("model", ""))
    model = emulator._model(name)
    if model is None:
        return _error(404, f"model '{name}' not found")

    fault = emulator.embed_fault
    if fault == "hang":
        await emulator._released.wait()
        raise asyncio.CancelledError  # the emulator is stopping; the client is gone
    if fault == "500":
        return _error(500, "llama runner process has terminated: exit status 2")
    if fault == "garbage":
        return web.Response(body=b"<html>502 Bad Gateway</html>", content_type="application/json")

    if body.get("truncate") is False:
        for text in texts:
            if len(text) > model.context_length:  # more characters than tokens can fit
                return _error(400, "the input length exceeds the context length")
    rows, tokens = await emulator.embedding_model.vectors(texts)
    rows = [normalised(r) for r in rows]
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and 0 < dimensions < (len(rows[0]) if rows else 0):
        rows = [normalised(r[:dimensions]) for r in rows]
    reply = {
        "model": name,
        "embeddings": misbehave(rows, fault),
        "total_duration": time.monotonic_ns() - started,
        "load_duration": 0,
        "prompt_eval_count": tokens,
    }
    # json.dumps writes NaN as the bare token NaN (what the "nan" fault sends).
    return web.Response(body=json.dumps(reply).encode(), content_type="application/json")
