"""The OpenAI-compatible backend: any server that speaks /v1/chat/completions.

llama.cpp's llama-server, vLLM, SGLang, LM Studio, LocalAI, llama_cpp.server and hosted
services all serve this API; it is also the way out when one machine is not enough (a GPU box
or a cluster behind a load balancer serves many bot processes). The official `openai` client
does the streaming (SSE), the retries with backoff on 429 and 5xx (it honours Retry-After)
and the timeouts; this module maps its errors to the chat's messages.

Token counts are exact where the server can tokenize (server_tokens.py); otherwise the
calibrated estimate that the Ollama backend uses. The window is the server's, learnt from its
refusal where it reports none (openai_window.py); every reply ends, however the server
streams (openai_reply.py). Tools are sent as `tools` and `tool_choice`, and streamed calls
assembled from their fragments (openai_tools.py); a server that refuses `tools` is asked again
without them, and the chat goes on without tools from then on (tool_support says why).
Images go as `image_url` content parts to a model that can see (openai_vision.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar, cast

import httpx
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from botkit.backends.base import (
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Chunk,
    GenerationParams,
    Message,
    ModelNotFound,
)
from botkit.backends.image_cost import image_count
from botkit.backends.openai_errors import mapped_error
from botkit.backends.openai_reply import ReplyClock, StreamedReply
from botkit.backends.openai_request import EXTENSIONS, RequestArguments
from botkit.backends.openai_tools import ToolCallFragments, chosen_tools, wire_tool_choice
from botkit.backends.openai_usage import reply_usage
from botkit.backends.openai_vision import ServerVision, wire_messages
from botkit.backends.openai_window import ServerWindow
from botkit.backends.server_tokens import ServerTokens
from botkit.config import OpenAIConfig
from botkit.images.spec import Image
from botkit.secrets import read_secret
from botkit.tools.spec import ToolChoice, ToolSpec

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_PROBE_TIMEOUT = 30.0  # the most a tokenize probe waits (llama_cpp.server's waits for the model)


class OpenAIBackend:
    """A model behind an OpenAI-compatible server."""

    def __init__(self, name: str, config: OpenAIConfig) -> None:
        self.name = name
        self.config = config
        key = read_secret(config.api_key_env, config.credential)
        self._has_key = key is not None
        self._client = AsyncOpenAI(
            base_url=config.base_url,
            # The client needs a key; servers without authentication ignore it.
            api_key=key or "no-key",
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            max_retries=config.max_retries,
        )
        probing = self._client.with_options(
            timeout=httpx.Timeout(min(config.read_timeout, _PROBE_TIMEOUT),
                                  connect=config.connect_timeout),
            max_retries=0,
        )  # fmt: skip
        self._probing = probing
        self._tokens = ServerTokens(self._client, probing, config.base_url, config.model)
        self._window = ServerWindow(name, self._where(), config.n_ctx)
        self._served: list[str] = []
        self._sent = RequestArguments(self._where(), config.sampling_extensions)
        self._warned_runaway = False
        self._vision = ServerVision(name, config, self._where())

    # --- facts ----------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        """The server's context length (reported or learnt), else the config's n_ctx, else
        4096."""
        return self._window.size

    @property
    def tokenizer_id(self) -> str:
        """The server's tokenizer, or the estimate's version: counts are redone on change."""
        return self._tokens.tokenizer_id

    @property
    def max_parallel(self) -> int:
        """Requests sent at once (the server batches them)."""
        return self.config.parallel

    @property
    def ignored_settings(self) -> frozenset[str]:
        """Sampling options the server is not sent (no extensions: top_k, min_p, repeat
        penalty)."""
        return frozenset() if self._sent.extensions_on else frozenset(EXTENSIONS)

    # --- errors ---------------------------------------------------------------------------

    def _where(self) -> str:
        return f"the model server at {self.config.base_url}"

    def _mapped(self, exc: BaseException) -> BackendError:
        """A client or transport error as a message fit for the chat (never the key)."""
        if isinstance(exc, openai.NotFoundError):
            return self._not_found()
        return mapped_error(exc, self.config, self._where(), self._has_key)

    def _not_found(self) -> ModelNotFound:
        served = ", ".join(self._served[:20]) or "none"
        return ModelNotFound(
            f"model {self.config.model!r} is not served by {self._where()}; it serves: {served}"
        )

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (openai.APIError, httpx.TransportError) as exc:
            raise await self._failure(exc) from None

    async def _failure(self, exc: openai.APIError | httpx.TransportError) -> BackendError:
        if isinstance(exc, openai.NotFoundError):
            with contextlib.suppress(openai.APIError, httpx.TransportError):
                # The model may have been unloaded since start: say what is served now.
                self._served = [m.id for m in (await self._client.models.list()).data]
        return self._mapped(exc)

    # --- lifecycle ------------------------------------------------------------------------

    async def _probe(self) -> None:
        """Find the model in /v1/models (with its context length where the server says) and
        the server's tokenizer."""
        if self._window.found:
            return
        listed = await self._call(self._client.models.list())
        self._served = [m.id for m in listed.data]
        found = next((m for m in listed.data if m.id == self.config.model), None)
        if found is None:
            raise self._not_found()
        await self._tokens.probe()  # a tokenize endpoint that fails only means estimates
        await self._window.find(self._client, self._tokens.root, found.model_extra or {})

    async def start(self) -> None:
        """Look the model up; a server that is down is reported, not fatal (it may come up)."""
        try:
            await self._probe()
        except BackendError as exc:
            log.warning("backend %s: %s", self.name, exc)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    # --- tokens ---------------------------------------------------------------------------

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """The prompt's length: exact where the server tokenizes, else estimated."""
        try:
            return await self._tokens.prompt(messages)
        except (openai.APIError, httpx.TransportError) as exc:
            raise self._mapped(exc) from None

    async def message_tokens(self, message: Message) -> int:
        """Tokens one message adds to a prompt."""
        try:
            return await self._tokens.message(message)
        except (openai.APIError, httpx.TransportError) as exc:
            raise self._mapped(exc) from None

    # --- tools ----------------------------------------------------------------------------

    async def tool_support(self) -> str | None:
        """None (an OpenAI-compatible server takes `tools`) until the server refused them;
        then what it said."""
        return self._sent.tools_refused

    async def tool_tokens(self, tools: Sequence[ToolSpec]) -> int:
        """The declarations' JSON counted with the server's tokenizer, else estimated: exact
        for templates that embed that JSON, an estimate for others (server_tokens.py)."""
        try:
            return await self._tokens.declarations(tools)
        except (openai.APIError, httpx.TransportError) as exc:
            raise self._mapped(exc) from None

    # --- images ---------------------------------------------------------------------------

    async def vision_support(self) -> str | None:
        """None when the model can see images (the config, llama-server's /props); otherwise
        why not, with the server's own words once it refused one (openai_vision.py)."""
        try:
            await self._probe()
        except BackendError as exc:
            if self.config.vision is True:
                return None
            return f"whether the model can see cannot be asked now ({exc})"
        await self._vision.ask(self._probing, self._tokens.root)
        return self._vision.reason()

    async def image_tokens(self, image: Image) -> int:
        """Learnt from the server's prompt counts, else OpenAI's tile formula (an estimate)."""
        return self._vision.cost.tokens(image)

    # --- generation -----------------------------------------------------------------------

    async def _open(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        tools: Sequence[ToolSpec],
        tool_choice: ToolChoice,
    ) -> tuple[int, int, float, AsyncStream[ChatCompletionChunk]]:
        """Count the prompt and send the request: (prompt tokens, the window it was checked
        against, when sent, the stream)."""
        await self._probe()
        images = image_count(messages)
        if images:
            blind = await self.vision_support()
            if blind is not None:
                raise BackendError(f"images cannot be sent to this model: {blind}")
        sent_tools = [] if self._sent.tools_refused else chosen_tools(tools, tool_choice)
        prompt = (
            await self.count_tokens(messages)
            + self._vision.images_tokens(messages)
            + await self.tool_tokens(sent_tools)
        )
        window = self.context_window
        if prompt + params.max_tokens > window:
            raise self._window.too_long(prompt, params.max_tokens)
        options = params.sampling()
        while True:
            with_tools = bool(sent_tools) and self._sent.tools_refused is None
            sent = time.perf_counter()
            try:
                stream = await self._client.chat.completions.create(
                    model=self.config.model,
                    messages=_wire(messages),
                    stream=True,
                    stream_options=(
                        {"include_usage": True} if self._sent.stream_options_on else openai.omit
                    ),
                    temperature=options["temperature"],
                    top_p=options["top_p"],
                    seed=options["seed"],
                    max_tokens=options["max_tokens"],
                    presence_penalty=options["presence_penalty"],
                    frequency_penalty=options["frequency_penalty"],
                    extra_body=self._sent.extensions(options),
                    tools=(
                        cast("Any", [t.to_openai() for t in sent_tools])
                        if with_tools else openai.omit
                    ),
                    tool_choice=(
                        cast("Any", wire_tool_choice(tool_choice)) if with_tools else openai.omit
                    ),
                )  # fmt: skip
                return prompt, window, sent, stream
            except openai.APIStatusError as exc:
                overflow = self._window.refused(exc, prompt, window)
                if overflow is not None:
                    raise overflow from None
                if images and self._vision.refusal(exc):
                    raise BackendError(
                        f"images cannot be sent to this model: {self._vision.refused}"
                    ) from None
                if with_tools and self._sent.refuse_tools(exc):
                    continue
                refusal = isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError)
                if not (refusal and self._sent.drop_refused(exc)):
                    raise await self._failure(exc) from None
            except (openai.APIError, httpx.TransportError) as exc:
                raise await self._failure(exc) from None

    def _cut(self, reply: StreamedReply, max_tokens: int) -> None:
        if not self._warned_runaway:
            self._warned_runaway = True
            log.warning(
                "%s streamed past max_tokens (%d): replies are cut at %d tokens by botkit; "
                "the server ignores max_tokens", self._where(), max_tokens, reply.limit,
            )  # fmt: skip

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        """Stream /v1/chat/completions with the chat's sampling options: cut a little past
        max_tokens if the server does not stop there, and within reply_timeout in all. Tool
        calls end the stream in one chunk, once every fragment has come."""
        cfg = self.config
        clock = ReplyClock(self._where(), cfg.read_timeout, cfg.reply_timeout)
        prompt, window, sent, stream = await clock.within(
            self._open(messages, params, tools, tool_choice)
        )
        finish: str | None = None
        broken: BackendError | None = None
        reply = StreamedReply(sent, params.max_tokens)
        fragments = ToolCallFragments(self._where())
        try:
            parts = aiter(stream)
            while (part := await clock.next(parts)) is not None:
                reply.take(part)
                for choice in part.choices:
                    text = choice.delta.content or "" if choice.delta else ""
                    if text:
                        reply.text(text)
                        yield Chunk(text)
                    for fragment in (choice.delta.tool_calls or []) if choice.delta else []:
                        fragments.add(fragment.model_dump(warnings=False, exclude_unset=True))
                        reply.text("")  # a piece of the reply (for max_tokens), with no text
                    if choice.finish_reason:
                        finish = choice.finish_reason
                if reply.runaway:
                    self._cut(reply, params.max_tokens)
                    finish = "length"
                    break
        except (openai.APIError, httpx.TransportError) as exc:
            # An error event in the stream carries the error object, as a refusal does.
            overflow = None
            if isinstance(exc, openai.APIError) and not reply.pieces:
                overflow = self._window.refused(exc, prompt, window)
            if overflow is not None:
                raise overflow from None
            broken = await self._failure(exc)
        finally:
            await stream.close()
        if finish is None:
            if not reply.pieces:
                overflow = await self._window.why_empty(
                    clock.within(
                        self._client.with_options(max_retries=1).chat.completions.create(
                            model=self.config.model, messages=_wire(messages), max_tokens=1
                        )
                    ),
                    prompt,
                    window,
                )
                if overflow is not None:
                    raise overflow
            midway = " (in the middle of a tool call)" if fragments else ""
            if broken is not None:
                raise type(broken)(f"{broken}{midway}")
            raise BackendUnavailable(
                f"the reply from {self._where()} ended before it was finished{midway}"
            )
        calls = fragments.calls()
        if finish == "tool_calls" and not calls:
            raise BackendError(f"{self._where()} said the model called tools but sent no call")
        usage = await reply_usage(self._tokens, self._vision, messages, prompt, reply, finish,
                                  calls)  # fmt: skip
        yield Chunk("", usage=usage, tool_calls=calls)

    async def info(self) -> BackendInfo:
        """The model as the server lists it."""
        await self._probe()
        return BackendInfo(
            backend=self.name,
            kind="openai",
            model_name=self.config.model,
            parameters=None,
            quantization=None,
            context_length=self.context_window,
            trained_context_length=self._window.trained,
            file_size=None,
            extra={
                "server": self.config.base_url,
                "window": self._window.describe(),
                "token counts": self._tokens.describe(),
                "vision": await self.vision_support() or "yes",
                "image tokens": self._vision.cost.describe(),
            },
        )


def _wire(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    return cast("list[ChatCompletionMessageParam]", wire_messages(messages))
