"""An Ollama daemon stand-in on 127.0.0.1, speaking the documented HTTP API.

Implements /api/version, /api/tags, /api/show, /api/embed (embed.py), /api/chat (NDJSON
stream or one JSON body),
with 404 {"error": ...} for unknown models, and /api/pull: the daemon's progress stream
(server/routes.go PullHandler; api/types.go ProgressResponse): "pulling manifest", one
"pulling <digest>" line per layer with digest/total/completed as the bytes arrive, "verifying
sha256 digest", "writing manifest", "success"; a name the registry does not have streams
{"error": "pull model manifest: file does not exist"} after the 200 (the stream has begun).
Models in `pullable` can be pulled and are served afterwards.

Replies are generated for real by the bundled SmolLM2 model through llama.cpp, honouring the
request's options (temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty,
frequency_penalty, seed, num_predict, num_ctx). Like Ollama, a prompt longer than num_ctx is
truncated silently (oldest messages first); the emulator records that it happened, with the
real token count of every prompt, so tests can prove botkit never relies on it.

Test hooks: `cut_after` breaks the next streams off after that many chunks; `hold_after` stops
sending after that many chunks and keeps the stream open until the emulator stops (`holding` is
set then); `stall` makes chat requests hang until the emulator stops; `records` lists
every chat request as received; `max_in_flight` is the most chats generated at once;
`embed_fault` makes /api/embed misbehave (tests/emulators/embeddings.py), `embed_records`
lists its requests. Tools (tools.py, its rules there): each model's `capabilities` are listed by
/api/show (`lists_capabilities` False: left out, as servers before 0.6.4 do) and a request with
tools for a model without `tools` is refused 400; `tool_replies` queues scripted replies.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from botkit.backends.base import GenerationParams, Message
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.config import LlamaCppConfig
from tests.emulators.embeddings import EmbeddingModel, EmbedFault
from tests.emulators.ollama.embed import embed
from tests.emulators.ollama.images import decoded_images, image_problem
from tests.emulators.ollama.tools import OllamaToolReply, tool_chat

VERSION = "0.12.11"
_MODIFIED = "2026-11-01T12:00:00.000000000Z"


@dataclass(frozen=True)
class EmulatedModel:
    """A model the emulator serves (all are the bundled SmolLM2 underneath)."""

    name: str
    family: str = "llama"
    parameter_size: str = "135M"
    quantization_level: str = "Q4_1"
    parameter_count: int = 134_515_008
    context_length: int = 8192
    capabilities: tuple[str, ...] = ("completion",)  # add "tools" for a model that calls them
    lists_capabilities: bool = True
    # A vision model (with "vision" in capabilities, images.py): the prompt tokens one image
    # costs, and what /api/show's model_info says of its projector (e.g. Gemma 3's
    # "<arch>.mm.tokens_per_image").
    image_tokens: int = 0
    vision_info: tuple[tuple[str, Any], ...] = ()


@dataclass
class ChatRecord:
    """One /api/chat request as the emulator saw it."""

    body: dict[str, Any]
    prompt_tokens: int = 0
    num_ctx: int = 0
    truncated: bool = False
    images: int = 0  # images the model saw
    image_cost: int = 0  # their prompt tokens
    images_dropped: int = 0  # images sent to a model without `vision`, ignored as Ollama does


@dataclass
class OllamaEmulator:
    """Start with `await emulator.start()`; `emulator.url` is the host to give the client."""

    models: list[EmulatedModel] = field(default_factory=lambda: [EmulatedModel("smollm2:135m")])
    pullable: list[EmulatedModel] = field(default_factory=list)
    engines_per_ctx: int = 2
    cut_after: int | None = None
    hold_after: int | None = None
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    stall: bool = False
    records: list[ChatRecord] = field(default_factory=list)
    max_in_flight: int = 0
    tool_replies: list[OllamaToolReply] = field(default_factory=list)
    # /api/embed (embed.py): how it misbehaves (None: it does not), and the requests seen.
    embed_fault: EmbedFault | None = None
    embed_records: list[dict[str, Any]] = field(default_factory=list)
    embedding_model: EmbeddingModel = field(default_factory=EmbeddingModel)
    url: str = ""
    _in_flight: int = 0
    _runner: web.AppRunner | None = None
    _pools: dict[int, asyncio.Queue[LlamaCppBackend]] = field(default_factory=dict)
    _engines: list[LlamaCppBackend] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _loading: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/show", self._show)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/pull", self._pull)
        app.router.add_post("/api/embed", functools.partial(embed, self))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        """Stop serving and free the models."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
        for engine in self._engines:
            await engine.close()
        self.embedding_model.close()

    # --- helpers ------------------------------------------------------------------------

    def _model(self, name: str) -> EmulatedModel | None:
        return next((m for m in self.models if name in (m.name, m.name.split(":")[0])), None)

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        # Exactly application/json, no charset parameter, like Ollama's Go server.
        return web.Response(
            body=json.dumps(data).encode(), status=status, content_type="application/json"
        )

    def _not_found(self, name: str) -> web.Response:
        return self._json({"error": f"model '{name}' not found"}, status=404)

    async def _engine(self, num_ctx: int) -> tuple[LlamaCppBackend, asyncio.Queue[LlamaCppBackend]]:
        async with self._loading:  # every engine of a pool is loaded before any is handed out
            pool = self._pools.get(num_ctx)
            if pool is None:
                pool = asyncio.Queue()
                for _ in range(self.engines_per_ctx):
                    engine = LlamaCppBackend("emulated", LlamaCppConfig(n_ctx=num_ctx))
                    await engine.start()
                    self._engines.append(engine)
                    pool.put_nowait(engine)
                self._pools[num_ctx] = pool
        return await pool.get(), pool

    # --- endpoints ----------------------------------------------------------------------

    async def _version(self, _request: web.Request) -> web.Response:
        return self._json({"version": VERSION})

    async def _tags(self, _request: web.Request) -> web.Response:
        return self._json(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "modified_at": _MODIFIED,
                        "size": 98_362_432,
                        "digest": "0" * 64,
                        "details": self._details(m),
                    }
                    for m in self.models
                ]
            }
        )

    @staticmethod
    def _details(model: EmulatedModel) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": model.family,
            "families": [model.family],
            "parameter_size": model.parameter_size,
            "quantization_level": model.quantization_level,
        }

    async def _show(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = body.get("model") or body.get("name", "")
        model = self._model(name)
        if model is None:
            return self._not_found(name)
        capabilities = {"capabilities": list(model.capabilities)}
        return self._json(
            {
                **(capabilities if model.lists_capabilities else {}),
                "modelfile": f"FROM {model.name}",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": self._details(model),
                "model_info": {
                    "general.architecture": model.family,
                    "general.parameter_count": model.parameter_count,
                    f"{model.family}.context_length": model.context_length,
                    **{k.replace("<arch>", model.family): v for k, v in model.vision_info},
                },
                "modified_at": _MODIFIED,
            }
        )

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = body.get("model") or body.get("name", "")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)

        async def send(**part: Any) -> None:
            await response.write(json.dumps(part).encode() + b"\n")

        await send(status="pulling manifest")
        model = next((m for m in self.pullable if name in (m.name, m.name.split(":")[0])), None)
        if model is None:
            await send(error="pull model manifest: file does not exist")
            await response.write_eof()
            return response
        layers = {"sha256:" + "a" * 64: 98_362_432, "sha256:" + "b" * 64: 1_024}
        for digest, total in layers.items():
            for completed in range(0, total + 1, max(1, total // 20)):
                await send(status=f"pulling {digest[7:19]}", digest=digest, total=total,
                           completed=completed)  # fmt: skip
            await send(status=f"pulling {digest[7:19]}", digest=digest, total=total,
                       completed=total)  # fmt: skip
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            await send(status=status)
        self.models.append(model)
        await response.write_eof()
        return response

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        record = ChatRecord(body=body)
        self.records.append(record)
        problem = image_problem(body.get("messages"))
        if problem is not None:  # Go's decoder, before the handler runs
            return self._json({"error": problem}, status=400)
        name = body.get("model", "")
        model = self._model(name)
        if model is None:
            return self._not_found(name)
        images, broken = decoded_images(body.get("messages") or [])
        if "vision" not in model.capabilities:
            record.images_dropped = images
        elif broken is not None:
            return self._json({"error": broken}, status=500)
        else:
            record.images, record.image_cost = images, images * model.image_tokens
        scripted = await tool_chat(self, request, body, model)
        if scripted is not None:
            return scripted
        if self.stall:  # a daemon that accepts the request and never answers
            await self._released.wait()
            raise asyncio.CancelledError  # the client is gone; nothing to answer
        options = body.get("options") or {}
        num_ctx = int(options.get("num_ctx", 2048))
        messages: list[Message] = [
            {"role": m["role"], "content": m["content"]} for m in body.get("messages", [])
        ]
        engine, pool = await self._engine(num_ctx)
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._generate(request, engine, record, messages, options, num_ctx)
        finally:
            self._in_flight -= 1
            pool.put_nowait(engine)

    async def _generate(
        self,
        request: web.Request,
        engine: LlamaCppBackend,
        record: ChatRecord,
        messages: list[Message],
        options: dict[str, Any],
        num_ctx: int,
    ) -> web.StreamResponse:
        record.num_ctx = num_ctx
        record.prompt_tokens = await engine.count_tokens(messages)
        while record.prompt_tokens >= num_ctx - 1 and len(messages) > 2:
            messages.pop(1)  # what Ollama does: the oldest turns go, silently
            record.truncated = True
            record.prompt_tokens = await engine.count_tokens(messages)
        room = num_ctx - record.prompt_tokens
        num_predict = int(options.get("num_predict", -1))
        max_tokens = room if num_predict < 0 else min(num_predict, room)
        # Ollama's defaults (api/types.go DefaultOptions); botkit's ranges are not the server's,
        # so nothing is validated here.
        params = GenerationParams.model_construct(
            temperature=float(options.get("temperature", 0.8)),
            top_k=int(options.get("top_k", 40)),
            top_p=float(options.get("top_p", 0.9)),
            min_p=float(options.get("min_p", 0.0)),
            repeat_penalty=float(options.get("repeat_penalty", 1.1)),
            presence_penalty=float(options.get("presence_penalty", 0.0)),
            frequency_penalty=float(options.get("frequency_penalty", 0.0)),
            max_tokens=max(1, max_tokens),
            seed=int(options.get("seed", 0)),
            repeatable=False,
        )
        model = record.body["model"]
        started = time.monotonic_ns()
        stream = record.body.get("stream", True)
        response: web.StreamResponse | None = None
        if stream:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
        text = ""
        sent = 0
        first: int | None = None
        final: dict[str, Any] = {}
        async for chunk in engine.stream(messages, params, cache_key="emulator"):
            if chunk.text:
                if first is None:
                    first = time.monotonic_ns()
                text += chunk.text
                if response is not None:
                    if self.cut_after is not None and sent >= self.cut_after:
                        assert request.transport is not None
                        request.transport.close()  # the daemon died mid-reply
                        return response
                    await response.write(self._line(model, chunk.text, done=False))
                    sent += 1
                    if self.hold_after is not None and sent >= self.hold_after:
                        self.holding.set()  # a daemon that hangs mid-reply
                        await self._released.wait()
                        raise asyncio.CancelledError
            if chunk.usage is not None:
                # Ollama's runner (runner/llamarunner/runner.go): prompt_eval_duration runs from
                # the start of processing to the start of generation, eval_duration from there
                # to the end; prompt_eval_count is the whole prompt (numPromptInputs), cached
                # or not; durations are nanoseconds (api/types.go Metrics).
                ended = time.monotonic_ns()
                generating = first if first is not None else ended
                final = {
                    "done_reason": "length" if chunk.usage.stop_reason == "length" else "stop",
                    "total_duration": ended - started,
                    "load_duration": 0,
                    "prompt_eval_count": record.prompt_tokens + record.image_cost,
                    "prompt_eval_duration": generating - started,
                    "eval_count": chunk.usage.completion_tokens,
                    "eval_duration": ended - generating,
                }
        if response is None:
            return self._json(
                {"model": model, "created_at": _MODIFIED,
                 "message": {"role": "assistant", "content": text}, "done": True, **final}
            )  # fmt: skip
        await response.write(self._line(model, "", done=True, **final))
        await response.write_eof()
        return response

    @staticmethod
    def _line(model: str, content: str, *, done: bool, **extra: Any) -> bytes:
        part = {
            "model": model,
            "created_at": _MODIFIED,
            "message": {"role": "assistant", "content": content},
            "done": done,
            **extra,
        }
        return json.dumps(part).encode() + b"\n"
