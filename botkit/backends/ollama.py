"""The Ollama backend: streams from a local or remote Ollama daemon with the official client.

Ollama has no tokenize endpoint and silently truncates a prompt longer than `num_ctx`, so this
backend always sends `num_ctx` and counts tokens with a calibrated estimate (TokenEstimator);
the conversation trims the history to fit before anything is sent.

Tools (ollama_tools.py for the shapes): a model can call them when /api/show lists the `tools`
capability. A server too old to list capabilities (before 0.6.4) is taken at its word that it
may: tools are sent, and its 400 "... does not support tools" (server/routes.go, the model's
template has no .Tools) is remembered as the reason, the request sent again without them, as a
server that lists `tools` and refuses anyway is.

Images (ollama_vision.py): sent as a message's `images` only to a model that lists the
`vision` capability (Ollama itself would drop them silently); their tokens are estimated from
the model's details until a reply's prompt_eval_count tells (image_cost.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import httpx
from ollama import AsyncClient, ResponseError

from botkit.backends.base import (
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Chunk,
    ContextOverflow,
    GenerationParams,
    Message,
    ModelNotFound,
    Usage,
)
from botkit.backends.image_cost import ImageCost, image_count
from botkit.backends.ollama_tools import ollama_calls, ollama_messages, ollama_tools
from botkit.backends.ollama_vision import OLLAMA_IMAGE_TOKENS, image_estimate, vision_reason
from botkit.backends.token_estimate import TokenEstimator
from botkit.config import OllamaConfig
from botkit.images.spec import Image
from botkit.tools.spec import ToolCall, ToolChoice, ToolSpec

__all__ = ["OllamaBackend"]

log = logging.getLogger(__name__)

# Ollama's names for the sampling options where they differ from ours; the others (temperature,
# top_k, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty, seed) are the same
# (Ollama's api.Options, docs/modelfile.md).
_OPTION_NAMES = {"max_tokens": "num_predict"}


def _usage(final: Any, first: float | None, sent: float, called: bool) -> Usage:
    """Usage from the last chunk of /api/chat: prompt_eval_count and eval_count with their
    durations in nanoseconds (Ollama's api.Metrics). Ollama does not say how much of the
    prompt its cache served, nor that it restored anything; the time to the first token is
    measured here, from the request to the first piece of text."""
    prompt_ns, eval_ns = final.prompt_eval_duration, final.eval_duration
    count = final.eval_count or 0
    # eval_duration covers every generated token; the first follows the prefill at once.
    speed = count / (eval_ns / 1e9) if eval_ns and count else None
    return Usage(
        prompt_tokens=final.prompt_eval_count or 0,
        completion_tokens=count,
        stop_reason="tool_calls"
        if called
        else "length"
        if final.done_reason == "length"
        else "stop",
        cached_prompt_tokens=None,
        prefill_seconds=prompt_ns / 1e9 if prompt_ns else None,
        first_token_seconds=None if first is None else first - sent,
        tokens_per_second=speed,
    )


class OllamaBackend:
    """A model served by Ollama."""

    def __init__(self, name: str, config: OllamaConfig) -> None:
        self.name = name
        self.config = config
        self._client = AsyncClient(
            host=config.host,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
        )
        self._estimator = TokenEstimator()
        self._show: dict[str, Any] | None = None
        self._trained_ctx: int | None = None
        self._num_ctx = config.num_ctx
        self._tools_refused: str | None = None  # the server refused `tools` for this model
        self._image_cost = ImageCost(
            lambda _image: OLLAMA_IMAGE_TOKENS, f"{OLLAMA_IMAGE_TOKENS} per image (not asked yet)"
        )

    @property
    def context_window(self) -> int:
        """The num_ctx sent with every request."""
        return self._num_ctx or self.config.max_num_ctx

    @property
    def tokenizer_id(self) -> str:
        """The estimate's model and ratio: stored counts are redone when the ratio moves."""
        return f"ollama-estimate:{self.config.model}:{self._estimator.version}"

    @property
    def max_parallel(self) -> int:
        """Ollama serves parallel requests; how many is configured."""
        return self.config.parallel

    @property
    def ignored_settings(self) -> frozenset[str]:
        """None: Ollama's options cover every sampling setting."""
        return frozenset()

    def _unreachable(self, detail: str = "") -> BackendUnavailable:
        extra = f" ({detail})" if detail else ""
        return BackendUnavailable(
            f"Ollama at {self.config.host} is not reachable{extra}: is the daemon running?"
        )

    def _not_found(self) -> ModelNotFound:
        model = self.config.model
        return ModelNotFound(
            f"model {model!r} is not on the Ollama server at {self.config.host}; "
            f"pull it with `botkit models pull --ollama {model}` (or `ollama pull {model}` there)"
        )

    async def _call(self, coro: Any) -> Any:
        """Await a client call, turning transport and HTTP errors into backend errors."""
        try:
            return await coro
        except ResponseError as exc:
            if exc.status_code == 404:
                raise self._not_found() from None
            raise BackendUnavailable(
                f"Ollama at {self.config.host} answered: {exc.error}"
            ) from None
        except (ConnectionError, httpx.ConnectError) as exc:
            raise self._unreachable(type(exc).__name__) from None
        except httpx.TimeoutException:
            cfg = self.config
            limits = f"{cfg.connect_timeout:g} s to connect, {cfg.read_timeout:g} s to read"
            raise BackendUnavailable(
                f"Ollama at {self.config.host} did not answer in time ({limits})"
            ) from None
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                f"the connection to Ollama at {self.config.host} failed: {type(exc).__name__}"
            ) from None
        except ValueError as exc:  # a line that is not JSON, or not Ollama's shape (pydantic)
            raise BackendUnavailable(
                f"Ollama at {self.config.host} answered something that is not its API "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None

    async def _probe(self) -> dict[str, Any]:
        if self._show is None:
            show = await self._call(self._client.show(self.config.model))
            info = dict(show.modelinfo or {})
            arch = info.get("general.architecture", "")
            trained = info.get(f"{arch}.context_length")
            self._trained_ctx = int(trained) if trained else None
            if self.config.num_ctx is None and self._trained_ctx:
                self._num_ctx = min(self._trained_ctx, self.config.max_num_ctx)
            details = show.details
            per_image, source = image_estimate(info)
            self._image_cost = ImageCost(lambda _image: per_image, source)
            self._show = {
                "capabilities": None if show.capabilities is None else list(show.capabilities),
                "info": info,
                "family": getattr(details, "family", None),
                "parameter_size": getattr(details, "parameter_size", None),
                "quantization_level": getattr(details, "quantization_level", None),
            }
        return self._show

    async def start(self) -> None:
        """Look the model up; a daemon that is down is reported, not fatal (it may come up)."""
        try:
            await self._probe()
        except BackendError as exc:
            log.warning("backend %s: %s", self.name, exc)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """Estimated prompt length (see TokenEstimator)."""
        return self._estimator.prompt(messages)

    async def message_tokens(self, message: Message) -> int:
        """Estimated tokens of one message."""
        return self._estimator.message(message)

    async def tool_support(self) -> str | None:
        """None when the model lists the `tools` capability, or the server lists none at all
        (older than capabilities; see the module docstring) and has not refused them."""
        if self._tools_refused:
            return self._tools_refused
        try:
            capabilities = (await self._probe())["capabilities"]
        except BackendError as exc:
            return f"the model's capabilities cannot be asked now ({exc})"
        if capabilities is not None and "tools" not in capabilities:
            return f"this Ollama model has no `tools` capability ({self.config.model})"
        return None

    async def vision_support(self) -> str | None:
        """None when the model lists the `vision` capability (or the config says it can see);
        otherwise why not (ollama_vision.py: a server that lists none cannot tell)."""
        try:
            capabilities = (await self._probe())["capabilities"]
        except BackendError as exc:
            if self.config.vision is True:
                return None
            return f"the model's capabilities cannot be asked now ({exc})"
        return vision_reason(capabilities, self.config.vision, self.config.model, self.name)

    async def image_tokens(self, image: Image) -> int:
        """An estimate, as every count here: the figure learnt from replies' prompt counts,
        else the model's projector details (ollama_vision.py)."""
        with contextlib.suppress(BackendError):
            await self._probe()  # the model's details, where the server answers
        return self._image_cost.tokens(image)

    async def _images_tokens(self, messages: Sequence[Message]) -> int:
        return sum([await self.image_tokens(i) for m in messages for i in m.get("images") or ()])

    def _observe(self, messages: Sequence[Message], reported: int) -> None:
        """Learn the text ratio and an image's cost from the server's prompt count."""
        images = image_count(messages)
        if images:
            text = self._estimator.prompt(messages)
            self._image_cost.observe(images, reported, text)
            if self._image_cost.learned is None:
                return  # the images' part is unknown: the text cannot be told apart
            reported -= images * self._image_cost.learned
        self._estimator.observe(messages, reported)

    async def tool_tokens(self, tools: Sequence[ToolSpec]) -> int:
        """Estimated, as every count here (Ollama has no tokenizer endpoint): the
        declarations' JSON as one message's text. Ollama's template renders them its own way."""
        if not tools:
            return 0
        text = json.dumps([t.to_openai() for t in tools], ensure_ascii=False)
        return self._estimator.message({"role": "system", "content": text})

    async def _parts(
        self, messages: Sequence[Message], options: dict[str, Any], tools: list[dict[str, Any]]
    ) -> AsyncGenerator[Any]:
        """The chunks of /api/chat. A refusal of `tools` comes with the first chunk (the
        client reads the status there): it is remembered and the request sent without them."""
        while True:
            iterator: Any = None
            try:
                parts = await self._call(
                    self._client.chat(
                        model=self.config.model,
                        messages=ollama_messages(messages),
                        tools=tools or None,
                        stream=True,
                        options=options,
                        keep_alive=self.config.keep_alive,
                    )
                )
                iterator = parts.__aiter__()
                part = await self._call(iterator.__anext__())
            except StopAsyncIteration:
                return
            except BackendUnavailable as exc:
                if iterator is not None:
                    await iterator.aclose()
                if not (tools and "does not support tools" in str(exc)):
                    raise
                self._tools_refused = f"Ollama refused `tools` for {self.config.model}: {exc}"
                log.warning("%s: asked again without tools; this backend goes on without",
                            self._tools_refused)  # fmt: skip
                tools = []
                continue
            try:
                while True:
                    yield part
                    try:
                        part = await self._call(iterator.__anext__())
                    except StopAsyncIteration:
                        return
            finally:
                await iterator.aclose()

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        """Stream /api/chat with the chat's sampling options and an explicit num_ctx; the
        calls a reply made come whole in the last chunk."""
        await self._probe()
        if image_count(messages):
            blind = await self.vision_support()
            if blind is not None:  # Ollama would drop the images without a word
                raise BackendError(f"images cannot be sent to this model: {blind}")
        sent_tools = [] if await self.tool_support() else ollama_tools(tools, tool_choice)
        names = {w["function"]["name"] for w in sent_tools}
        estimate = (
            self._estimator.prompt(messages)
            + await self._images_tokens(messages)
            + await self.tool_tokens([t for t in tools if t.name in names])
        )
        if estimate + params.max_tokens > self.context_window:
            raise ContextOverflow(
                f"the prompt is about {estimate} tokens and the reply may take "
                f"{params.max_tokens}, but num_ctx is {self.context_window}"
            )
        options = params.sampling(_OPTION_NAMES)
        options["num_ctx"] = self.context_window
        sent = time.perf_counter()
        first: float | None = None
        calls: list[ToolCall] = []
        where = f"Ollama at {self.config.host}"
        parts = self._parts(messages, options, sent_tools)
        try:
            async for part in parts:
                text = part.message.content or ""
                if text and first is None:
                    first = time.perf_counter()
                raw = [c.model_dump() for c in part.message.tool_calls or ()]
                calls.extend(ollama_calls(raw, len(calls), where))
                if part.done:
                    prompt_tokens = part.prompt_eval_count or 0
                    if prompt_tokens:
                        self._observe(messages, prompt_tokens)
                    usage = _usage(part, first, sent, bool(calls))
                    yield Chunk(text, usage=usage, tool_calls=tuple(calls))
                    return
                if text:
                    yield Chunk(text)
        finally:
            await parts.aclose()
        midway = " (after a tool call)" if calls else ""
        raise BackendUnavailable(f"the reply from {where} ended before it was finished{midway}")

    async def version(self) -> str:
        """The server's version (/api/version)."""
        timeout = httpx.Timeout(self.config.read_timeout, connect=self.config.connect_timeout)
        async with httpx.AsyncClient(base_url=self.config.host, timeout=timeout) as http:
            response = await self._call(http.get("/api/version"))
        return str(response.json().get("version", "?"))

    async def info(self) -> BackendInfo:
        """Model details from /api/show."""
        show = await self._probe()
        info = show["info"]
        count = info.get("general.parameter_count")
        extra = {"host": self.config.host, "server version": await self.version(),
                 "vision": await self.vision_support() or "yes",
                 "image tokens": self._image_cost.describe()}  # fmt: skip
        for key in ("family", "parameter_size"):
            if show[key]:
                extra[key.replace("_", " ")] = str(show[key])
        return BackendInfo(
            backend=self.name,
            kind="ollama",
            model_name=self.config.model,
            parameters=int(count) if count else None,
            quantization=show["quantization_level"],
            context_length=self.context_window,
            trained_context_length=self._trained_ctx,
            file_size=None,
            extra=extra,
        )
