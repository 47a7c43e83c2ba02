"""The OpenAI-compatible backend: any server that speaks /v1/chat/completions.

llama.cpp's llama-server, vLLM, SGLang, LM Studio, LocalAI, llama_cpp.server and hosted
services all serve this API; it is also the way out when one machine is not enough (a GPU box
or a cluster behind a load balancer serves many bot processes). The official `openai` client
does the streaming (SSE), the retries with backoff on 429 and 5xx (it honours Retry-After)
and the timeouts; this module maps its errors to the chat's messages.

Token counts are exact where the server can tokenize (server_tokens.py); otherwise the
calibrated estimate that the Ollama backend uses.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Literal, TypeVar, cast

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from botkit.backends.base import (
    BackendBusy,
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Chunk,
    ContextOverflow,
    GenerationParams,
    Message,
    ModelNotFound,
    Usage,
    generation_speed,
)
from botkit.backends.server_tokens import ServerTokens
from botkit.config import OpenAIConfig
from botkit.secrets import read_secret

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_DEFAULT_WINDOW = 4096  # when neither the server nor the config says
# Not in the OpenAI API: sent in the body under the names llama.cpp's servers (top_k, min_p,
# repeat_penalty) and vLLM (top_k, min_p, repetition_penalty) read; each ignores the others.
_EXTENSIONS = {"top_k": ("top_k",), "min_p": ("min_p",),
               "repeat_penalty": ("repeat_penalty", "repetition_penalty")}  # fmt: skip


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
        self._tokens = ServerTokens(self._client, config.base_url, config.model)
        self._window: int | None = None
        self._trained: int | None = None
        self._served: list[str] = []
        # What is sent beyond the plain request until the server refuses it (api.openai.com
        # answers 400 "Unrecognized request argument supplied: top_k"; llama.cpp and vLLM
        # take both): then the rest of this process goes without.
        self._send_extensions = config.sampling_extensions
        self._send_stream_options = True

    # --- facts ----------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        """The server's context length, else the config's n_ctx, else 4096."""
        return self._window or self.config.window_hint

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
        return frozenset() if self._send_extensions else frozenset(_EXTENSIONS)

    # --- errors ---------------------------------------------------------------------------

    def _where(self) -> str:
        return f"the model server at {self.config.base_url}"

    def _mapped(self, exc: BaseException) -> BackendError:
        """A client or transport error as a message fit for the chat (never the key)."""
        cfg = self.config
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            where = f"${cfg.api_key_env} or the systemd credential {cfg.credential!r}"
            what = "refused the API key" if self._has_key else "needs an API key"
            return BackendUnavailable(
                f"{self._where()} {what} ({exc.status_code}): set the key in {where}"
            )
        if isinstance(exc, openai.NotFoundError):
            return self._not_found()
        if isinstance(exc, openai.RateLimitError) or (
            isinstance(exc, openai.APIStatusError) and exc.status_code == 503
        ):
            return BackendBusy(
                f"{self._where()} is busy ({exc.status_code}, still after "
                f"{cfg.max_retries} retries); try again in a moment"
            )
        if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
            limits = f"{cfg.connect_timeout:g} s to connect, {cfg.read_timeout:g} s to read"
            return BackendUnavailable(f"{self._where()} did not answer in time ({limits})")
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailable(f"{self._where()} is not reachable: is it running?")
        if isinstance(exc, openai.APIStatusError):
            detail = _error_message(exc)
            return BackendUnavailable(f"{self._where()} answered {exc.status_code}: {detail}")
        return BackendUnavailable(f"the connection to {self._where()} failed: {type(exc).__name__}")

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
        if self._window is not None:
            return
        listed = await self._call(self._client.models.list())
        self._served = [m.id for m in listed.data]
        found = next((m for m in listed.data if m.id == self.config.model), None)
        if found is None:
            raise self._not_found()
        extra = found.model_extra or {}
        meta = extra.get("meta")
        trained = meta.get("n_ctx_train") if isinstance(meta, dict) else None
        self._trained = trained if isinstance(trained, int) and trained > 0 else None
        reported = _positive(extra.get("max_model_len")) or await self._props_context()
        window = reported or self.config.n_ctx
        if window is None:
            log.warning(
                "backend %s: the server does not report a context length and n_ctx is not "
                "set; assuming %d tokens",
                self.name,
                _DEFAULT_WINDOW,
            )
            window = _DEFAULT_WINDOW
        try:
            await self._tokens.probe()
        except (openai.APIError, httpx.TransportError) as exc:
            raise self._mapped(exc) from None
        self._window = window

    async def _props_context(self) -> int | None:
        """llama-server's context per request (GET /props, default_generation_settings.n_ctx);
        its /v1/models gives only the trained length, which the server may not have loaded."""
        root = self._tokens.root
        try:
            props = await self._client.get(f"{root}/props", cast_to=object)
        except (openai.APIError, httpx.TransportError):
            return None  # not llama-server
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        return _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None

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

    # --- generation -----------------------------------------------------------------------

    def _extensions(self, options: dict[str, Any]) -> dict[str, Any] | None:
        if not self._send_extensions:
            return None
        return {wire: options[name] for name, wires in _EXTENSIONS.items() for wire in wires}

    def _drop_refused(self, exc: openai.APIStatusError) -> bool:
        """Stop sending what the server refused by name (a 400 or 422 that names an argument
        beyond the plain request); True if something was dropped, so the request is worth
        sending again."""
        detail = _error_message(exc)
        param = exc.body.get("param") if isinstance(exc.body, dict) else None

        def named(wire: str) -> bool:
            return wire == param or re.search(rf"\b{wire}\b", detail) is not None

        if self._send_extensions and any(
            named(wire) for wires in _EXTENSIONS.values() for wire in wires
        ):
            self._send_extensions = False
            log.warning(
                "%s refused an argument beyond the OpenAI API (%s): top_k, min_p and "
                "repeat_penalty are no longer sent, and /settings says so "
                "(sampling_extensions = false makes this the start)", self._where(), detail,
            )  # fmt: skip
            return True
        if self._send_stream_options and named("stream_options"):
            self._send_stream_options = False
            log.warning("%s refused stream_options (%s): usage is counted here instead",
                        self._where(), detail)  # fmt: skip
            return True
        return False

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams, *, cache_key: str
    ) -> AsyncIterator[Chunk]:
        """Stream /v1/chat/completions with the chat's sampling options."""
        await self._probe()
        prompt = await self.count_tokens(messages)
        if prompt + params.max_tokens > self.context_window:
            raise ContextOverflow(
                f"the prompt is {prompt} tokens and the reply may take {params.max_tokens}, "
                f"but the window is {self.context_window}"
            )
        options = params.sampling()
        sent = time.perf_counter()
        while True:
            try:
                stream = await self._client.chat.completions.create(
                    model=self.config.model,
                    messages=cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages]),
                    stream=True,
                    stream_options=(
                        {"include_usage": True} if self._send_stream_options else openai.omit
                    ),
                    temperature=options["temperature"],
                    top_p=options["top_p"],
                    seed=options["seed"],
                    max_tokens=options["max_tokens"],
                    presence_penalty=options["presence_penalty"],
                    frequency_penalty=options["frequency_penalty"],
                    extra_body=self._extensions(options),
                )
                break
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if not self._drop_refused(exc):
                    raise await self._failure(exc) from None
            except (openai.APIError, httpx.TransportError) as exc:
                raise await self._failure(exc) from None
        finish: str | None = None
        reply = _Reply(sent)
        try:
            async for part in stream:
                reply.take(part)
                for choice in part.choices:
                    text = choice.delta.content or "" if choice.delta else ""
                    if text:
                        reply.text(text)
                        yield Chunk(text)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except (openai.APIError, httpx.TransportError) as exc:
            raise await self._failure(exc) from None
        finally:
            await stream.close()
        if finish is None:
            raise BackendUnavailable(f"the reply from {self._where()} ended before it was finished")
        yield Chunk("", usage=await self._usage(messages, prompt, reply, finish))

    async def _usage(
        self, messages: Sequence[Message], prompt: int, reply: _Reply, finish: str
    ) -> Usage:
        """The server's figures where it sent them (usage with stream_options.include_usage;
        llama-server's timings), else counted and timed here."""
        stop: Literal["stop", "length"] = "length" if finish == "length" else "stop"
        end = time.perf_counter()
        reported, timings = reply.usage, reply.timings
        if reported is not None:
            self._tokens.observe(messages, int(reported.prompt_tokens))
            prompt = int(reported.prompt_tokens)
            completion = int(reported.completion_tokens)
        else:
            try:
                completion = await self._tokens.text("".join(reply.pieces))
            except (openai.APIError, httpx.TransportError):
                completion = 0  # the reply is complete; only its count is unknown
        details = getattr(reported, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None)
        if cached is None:
            cached = _number(timings.get("cache_n"))
        prompt_ms = _number(timings.get("prompt_ms"))
        speed = _number(timings.get("predicted_per_second"))
        first = None if reply.first is None else reply.first - reply.sent
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            stop_reason=stop,
            cached_prompt_tokens=None if cached is None else int(cached),
            prefill_seconds=None if prompt_ms is None else prompt_ms / 1000,
            first_token_seconds=first,
            tokens_per_second=speed or generation_speed(completion, reply.first, end),
        )

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
            trained_context_length=self._trained,
            file_size=None,
            extra={"server": self.config.base_url, "token counts": self._tokens.describe()},
        )


class _Reply:
    """What a stream brought: the text, when its first piece came, and the server's figures."""

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.first: float | None = None
        self.pieces: list[str] = []
        self.usage: Any = None
        self.timings: dict[str, Any] = {}

    def take(self, part: Any) -> None:
        if part.usage is not None:
            self.usage = part.usage
        timings = (part.model_extra or {}).get("timings")  # llama-server's own figures
        if isinstance(timings, dict):
            self.timings = timings

    def text(self, piece: str) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.pieces.append(piece)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        if isinstance(message, str):
            return message[:300]
    return exc.message[:300]
