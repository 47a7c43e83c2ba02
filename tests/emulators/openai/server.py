"""An OpenAI-compatible server stand-in on 127.0.0.1, for failures on demand.

The backend's normal path is tested against a real server (llama_cpp.server, from
llama-cpp-python[server]); this emulator exists for what a real server cannot be made to do on
demand: refuse a key, be busy, stall, break a stream off. It speaks the wire format of
OpenAI's API reference (https://platform.openai.com/docs/api-reference/chat), as strictly as
the real service where botkit could get it wrong:

- `Authorization: Bearer <key>` is required when a key is set; otherwise 401 with the error
  envelope `{"error": {"message", "type", "param", "code": "invalid_api_key"}}`.
- An unknown model is 404 with `code: "model_not_found"` (the API reference's error codes).
- `model` and a non-empty `messages` list of `{role, content}` with a known role are required
  (400 otherwise); `stream_options` is refused unless `stream` is true, as OpenAI does.
- A request argument the API does not define is refused, as OpenAI does: 400 "Unrecognized
  request argument supplied: top_k" (`type: invalid_request_error`, `param` and `code` null;
  api.openai.com's whole error body as quoted in github.com/nashsu/llm_wiki/issues/336 and
  github.com/coroot/coroot/issues/698).
  `accepted` lists the extra arguments a llama.cpp or vLLM server would take instead;
  `unknown`, API arguments an older server does not know (and refuses the same way).
- A stream is `text/event-stream`: `data: <chunk JSON>` events, a final chunk with
  `finish_reason`, a usage chunk with empty `choices` only when
  `stream_options.include_usage` is true, then `data: [DONE]`.
- 429 carries `Retry-After` (the client honours it), as do 503s.

- SSE lines that begin with ":" are comments, which a client ignores (WHATWG HTML, "Server-sent
  events"); servers send them as keep-alives (sse-starlette, under llama_cpp.server: ": ping").

Replies are made of the last user message's words (the model is not the point here); tokens
are counted as words, plus 4 per message.

/v1/embeddings is in embed.py (its rules there); `embed_fault` makes it misbehave
(tests/emulators/embeddings.py), `embed_records` lists its requests.

Hooks: `busy` answers the next N chat requests with 429 (or `busy_status`); `cut_after` breaks
the next streams off after that many content chunks (no finish_reason, no [DONE]); `stall`
makes chat requests hang until the emulator stops; `records` lists the chat requests.
Tools (tools.py, its rules there): `tool_replies` queues replies that call tools (for requests
that carry tools), `tool_records` lists the requests they answered; `tools_refusal` "jinja"
refuses tools as llama-server without --jinja does (500), and `unknown={"tools"}` as a server
that does not know the argument (400).

Misbehaviour on demand:
- `runaway`: stream that many words, whatever max_tokens says (a server that ignores it);
  `chunk_delay` paces the chunks (a slow model).
- `keepalive_only`: a stream of nothing but ": keep-alive" comments, until the emulator stops.
- `tokenize`: how POST /extras/tokenize (llama_cpp.server's path) fails: "405" (served for GET
  only), "500", "garbage" (a 200 whose JSON body does not parse) or "hang"; None: no such
  route (404), as a server without one.
- `echo_refusal`: a request with this text in a message is refused 400, the message quoting
  the user's text and `param` naming the message (as a validation error may quote input).
- `window` with `window_wording`: the context length the server enforces without reporting it,
  refused in that server's words (the first `refuse_together` refusals wait for each other:
  chats refused at once):
  - "vllm": prompt + max_tokens > window, 400 with vLLM's unwrapped ErrorResponse
    (`object: "error"`, `type: "BadRequestError"`, `code: 400`) and its sentence "This
    model's maximum context length is N tokens. However, you requested ..." (vllm-project/
    vllm, vllm/entrypoints/openai/serving_engine.py, `_validate_prompt_and_tokenize`).
  - "llama-server": prompt >= window, 400 `{"error": {"code": 400, "message": "request (N
    tokens) exceeds the available context size (W tokens), try increasing it", "type":
    "exceed_context_size_error", "n_prompt_tokens": N, "n_ctx": W}}` (ggml-org/llama.cpp pull
    request 15780 added the type and the two fields).
  - "llama-cpp-python": prompt >= window (llama_cpp/llama.py raises "Requested tokens (N)
    exceed context window of W"). Unstreamed: 400 with "This model's maximum context length
    is W tokens. However, ..." (`type: invalid_request_error`, `param: "messages"`, `code:
    context_length_exceeded`; llama_cpp/server/errors.py). Streamed: a 200 event stream with
    nothing in it, as llama_cpp.server 0.3.36 answers (the error is raised after the headers;
    seen against the real server).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import time
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Any, Literal

from aiohttp import web

from tests.emulators.embeddings import EmbeddingModel, EmbedFault
from tests.emulators.openai.embed import embeddings
from tests.emulators.openai.images import (
    LLAMA_SERVER_NO_IMAGES,
    content_text,
    image_parts,
)
from tests.emulators.openai.rules import invalid, unrecognized
from tests.emulators.openai.tools import ToolReply, tool_chat

# What llama.cpp's servers and vLLM take beyond the API (the sampling botkit sends there).
SERVER_FIELDS = frozenset({"top_k", "min_p", "repeat_penalty", "repetition_penalty"})
KEEPALIVE_EVERY = 0.05  # seconds between keep-alive comments


@dataclass
class OpenAIEmulator:
    """Start with `await emulator.start()`; `emulator.base_url` ends in /v1."""

    models: list[str] = field(default_factory=lambda: ["smollm2"])
    api_key: str | None = None
    busy: int = 0
    busy_status: int = 429
    cut_after: int | None = None
    stall: bool = False
    # What the models list and /props report, as vLLM (max_model_len in each model entry) and
    # llama-server (meta.n_ctx_train there, the loaded n_ctx in GET /props) do; None: absent.
    max_model_len: int | None = None
    n_ctx_train: int | None = None
    props_n_ctx: int | None = None
    # Images (images.py): whether the model sees them, what /props says of it (None: no
    # modalities there), how a blind one refuses, and what one image costs.
    vision: bool = False
    props_vision: bool | None = None
    vision_refusal: Literal["llama-server", "openai"] = "llama-server"
    image_tokens: int = 64
    accepted: frozenset[str] = SERVER_FIELDS  # frozenset(): as strict as api.openai.com
    unknown: frozenset[str] = frozenset()
    runaway: int | None = None
    chunk_delay: float = 0.0
    keepalive_only: bool = False
    tokenize: Literal["405", "500", "garbage", "hang"] | None = None
    echo_refusal: str | None = None
    window: int | None = None
    window_wording: Literal["vllm", "llama-server", "llama-cpp-python"] = "vllm"
    refuse_together: int = 1  # the first refusals of too-long prompts wait for this many
    records: list[dict[str, Any]] = field(default_factory=list)
    tool_replies: list[ToolReply] = field(default_factory=list)
    tool_records: list[dict[str, Any]] = field(default_factory=list)
    tools_refusal: Literal["jinja"] | None = None
    tokenize_calls: int = 0
    # /v1/embeddings (embed.py): how it misbehaves (None: it does not), and the requests seen.
    embed_fault: EmbedFault | None = None
    embed_records: list[dict[str, Any]] = field(default_factory=list)
    embedding_model: EmbeddingModel = field(default_factory=EmbeddingModel)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _streams: set[web.StreamResponse] = field(default_factory=set)
    _refusing: int = 0
    _together: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_get("/v1/models", self._list)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/props", self._props)
        app.router.add_post("/extras/tokenize", self._tokenize)
        app.router.add_post("/v1/embeddings", functools.partial(embeddings, self))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"

    async def stop(self) -> None:
        """Release stalled requests and stop listening."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self.embedding_model.close()

    @staticmethod
    def _error(status: int, message: str, code: str | None, kind: str = "invalid_request_error",
               headers: dict[str, str] | None = None) -> web.Response:  # fmt: skip
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            # OpenAI shows the key's last four characters; never the whole key.
            return self._error(401, "Incorrect API key provided.", "invalid_api_key")
        return None

    async def _list(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        data: list[dict[str, Any]] = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "emulator"}
            for m in self.models
        ]
        for entry in data:
            if self.max_model_len is not None:
                entry["max_model_len"] = self.max_model_len
            if self.n_ctx_train is not None:
                entry["meta"] = {"n_ctx_train": self.n_ctx_train, "n_vocab": 49152}
        return web.json_response({"object": "list", "data": data})

    async def _props(self, request: web.Request) -> web.Response:
        if self.props_n_ctx is None and self.props_vision is None:  # not llama-server
            raise web.HTTPNotFound()
        refused = self._refused(request)
        if refused is not None:
            return refused
        props: dict[str, Any] = {"total_slots": 1}
        if self.props_n_ctx is not None:
            props["default_generation_settings"] = {"n_ctx": self.props_n_ctx}
        if self.props_vision is not None:  # tools/server: modalities {vision, audio}
            props["modalities"] = {"vision": self.props_vision, "audio": False}
        return web.json_response(props)

    async def _tokenize(self, request: web.Request) -> web.Response:
        if self.tokenize is None:  # no such route
            raise web.HTTPNotFound()
        self.tokenize_calls += 1
        if self.tokenize == "405":  # served for GET only
            raise web.HTTPMethodNotAllowed("POST", ["GET"])
        if self.tokenize == "500":
            return self._error(500, "tokenizer crashed", None, "server_error")
        if self.tokenize == "hang":
            await self._released.wait()
        return web.Response(text="<html>not JSON", content_type="application/json")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "We could not parse the JSON body of your request.", None)
        problem = invalid(body) or unrecognized(body, self.accepted, self.unknown)
        if problem:
            return self._error(400, problem, None)
        self.records.append(body)
        if body["model"] not in self.models:
            return self._error(
                404, f"The model `{body['model']}` does not exist or you do not have access "
                "to it.", "model_not_found",
            )  # fmt: skip
        if self.busy > 0:
            self.busy -= 1
            if self.busy_status == 429:
                return self._error(429, "Rate limit reached. Please try again in 0s.",
                                   "rate_limit_exceeded", "requests",
                                   {"Retry-After": "0"})  # fmt: skip
            return self._error(503, "The server is overloaded.", None, "server_error",
                               {"Retry-After": "0"})  # fmt: skip
        if self.stall:
            await self._released.wait()
            raise web.HTTPServiceUnavailable()
        if image_parts(body["messages"]) and not self.vision:
            if self.vision_refusal == "llama-server":
                error = {"code": 500, "message": LLAMA_SERVER_NO_IMAGES, "type": "server_error"}
                return web.json_response({"error": error}, status=500)
            return self._error(400, "Invalid content type. image_url is only supported by "
                               "certain models.", None)  # fmt: skip
        echoed = self._echoed(body) or await tool_chat(self, request, body)
        if echoed is not None:
            return echoed
        if self._overflows(body):
            await self._refused_together()
            too_long = self._too_long(body)
            # llama_cpp.server's stream: the refusal comes after the headers, as nothing.
            return too_long or await self._empty_stream(request)
        words = (content_text(body["messages"][-1]["content"]).split() or ["..."])[: body.get(
            "max_tokens") or 16]  # fmt: skip
        if self.runaway is not None:
            words = list(islice(cycle(words), self.runaway))
        if not body.get("stream"):
            return web.json_response(self._completion(body, words))
        if self.keepalive_only:
            return await self._keepalives(request)
        return await self._stream(request, body, words)

    def _echoed(self, body: dict[str, Any]) -> web.Response | None:
        for i, message in enumerate(body["messages"]):
            if self.echo_refusal is not None and self.echo_refusal in content_text(
                message["content"]
            ):
                error = {"message": f"Invalid 'messages[{i}].content': {message['content']!r} "
                                    "is not allowed.", "type": "invalid_request_error",
                         "param": f"messages[{i}].content", "code": None}  # fmt: skip
                return web.json_response({"error": error}, status=400)
        return None

    async def _refused_together(self) -> None:
        """Hold a refusal until refuse_together of them wait (chats refused at once)."""
        self._refusing += 1
        if self._refusing >= self.refuse_together:
            self._together.set()
        await self._together.wait()

    def _overflows(self, body: dict[str, Any]) -> bool:
        if self.window is None:
            return False
        prompt = _prompt_tokens(body)
        if self.window_wording == "vllm":
            return prompt + (body.get("max_tokens") or 16) > self.window
        return prompt >= self.window  # llama.cpp's servers check the prompt alone

    def _too_long(self, body: dict[str, Any]) -> web.Response | None:
        prompt, window, asked = _prompt_tokens(body), self.window, body.get("max_tokens") or 16
        if self.window_wording == "llama-server":
            error = {"code": 400, "message": f"request ({prompt} tokens) exceeds the available "
                     f"context size ({window} tokens), try increasing it",
                     "type": "exceed_context_size_error", "n_prompt_tokens": prompt,
                     "n_ctx": window}  # fmt: skip
            return web.json_response({"error": error}, status=400)
        message = (f"This model's maximum context length is {window} tokens. However, you "
                   f"requested {prompt + asked} tokens ({prompt} in the messages, {asked} in "
                   "the completion). Please reduce the length of the messages or "
                   "completion.")  # fmt: skip
        if self.window_wording == "vllm":
            return web.json_response({"object": "error", "message": message,
                                      "type": "BadRequestError", "param": None, "code": 400},
                                     status=400)  # fmt: skip
        if body.get("stream"):
            return None
        error = {"message": message, "type": "invalid_request_error", "param": "messages",
                 "code": "context_length_exceeded"}  # fmt: skip
        return web.json_response({"error": error}, status=400)

    @staticmethod
    async def _empty_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write_eof()
        return response

    async def _keepalives(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            while not self._released.is_set():
                await response.write(b": keep-alive\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), KEEPALIVE_EVERY)
        return response

    def _completion(self, body: dict[str, Any], words: list[str]) -> dict[str, Any]:
        prompt = _prompt_tokens(body) + self.image_tokens * image_parts(body["messages"])
        return {
            "id": "chatcmpl-emulated", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": " ".join(words)}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(words),
                      "total_tokens": prompt + len(words),
                      # As OpenAI reports prompt caching (tokens served from its cache).
                      "prompt_tokens_details": {"cached_tokens": prompt // 2}},
        }  # fmt: skip

    async def _stream(
        self, request: web.Request, body: dict[str, Any], words: list[str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def event(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {"id": "chatcmpl-emulated", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": body["model"], "choices": choices,
                     **extra}  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": None}])  # fmt: skip
        for i, word in enumerate(words):
            if self.cut_after is not None and i >= self.cut_after:
                # Broken off: the connection ends with no finish_reason and no [DONE].
                assert request.transport is not None
                request.transport.close()
                return response
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            text = word if i == 0 else f" {word}"
            try:
                await event([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
            except ConnectionResetError:
                return response  # the client has gone (it cut the reply)
        await event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = self._completion(body, words)["usage"]
            await event([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _prompt_tokens(body: dict[str, Any]) -> int:
    return sum(len(content_text(m["content"]).split()) + 4 for m in body["messages"])
