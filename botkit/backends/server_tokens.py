"""Token counts for an OpenAI-compatible server: exact where it can tokenize, else estimated.

The OpenAI API itself has no tokenize call, but the servers people run locally do, each its
own way (probed in this order, at the server's root, beside /v1):
- llama_cpp.server: POST /extras/tokenize {"input": text} -> {"tokens": [...]}
- llama.cpp's llama-server: POST /tokenize {"content": text} -> {"tokens": [...]}
- vLLM: POST /tokenize {"model": m, "prompt": text} -> {"tokens": [...], "count": n}

A prompt is the chat template's framing around each message's text, by role, plus the
generation prompt. They are learnt once from the prompt_tokens the server reports for four
short prompts (max_tokens 1); the counts are then exact for templates that frame each message
on its own (ChatML, Llama 3, Gemma), and tests check them against the in-process model's own
count. A template that refuses the probes (two messages of one role in a row), or a server
with no tokenize endpoint, gets the calibrated estimate the Ollama backend uses
(TokenEstimator). So does a server whose endpoint fails while it is probed, whatever the way
(an error status, an answer that is no list of token ids, no answer in time): one probe at
start, its reason logged once, never a failed message.

Tool calls: an assistant message's calls count as their JSON text (token_estimate.counted_text)
and a tool result with the user's framing (the probes measure no tool turn). Tool declarations
count as their JSON text with the server's tokenizer: exact for that text, which templates in
the Hermes style (Qwen2.5, llama-server's --jinja) embed as it is; an estimate for templates that
rewrite the declarations (llama_cpp.server's chatml-function-calling writes TypeScript-like
signatures), whose wording around them is not measured.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, cast

import httpx
import openai
from cachetools import LRUCache
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from botkit.backends.base import Message
from botkit.backends.token_estimate import TokenEstimator, counted_text
from botkit.tools.spec import ToolSpec

__all__ = ["ServerTokens"]

log = logging.getLogger(__name__)

_CACHED_TEXTS = 4096  # counts of recent message texts (personas, the newest messages)


def _root(base_url: str) -> str:
    """The server's root: the API URL without its /v1."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _why(exc: Exception) -> str:
    """Why a tokenize call failed, in a few words for the log and /model."""
    if isinstance(exc, openai.APIStatusError):
        return f"answered {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return "no answer in time"
    if isinstance(exc, openai.APIConnectionError | httpx.HTTPError):
        return "the connection failed"
    return "no list of token ids in the answer"


class ServerTokens:
    """Counts with the server's tokenizer once probe() found one; the estimate until then.

    probing is the client for the probe's tokenize calls: short timeouts, no retries.
    """

    def __init__(self, client: AsyncOpenAI, probing: AsyncOpenAI, base_url: str,
                 model: str) -> None:  # fmt: skip
        self._client = client
        self._probing = probing
        self._root = _root(base_url)
        self._model = model
        self._estimator = TokenEstimator()
        self._endpoint: tuple[str, str] | None = None  # (path, body field) once found
        self._offset = 0  # tokens the endpoint adds to any text (a BOS token)
        self._framing: dict[str, int] = {}  # tokens around a message's text, by role
        self._generation = 0  # tokens of the prompt's end (the assistant's header)
        self._cache: LRUCache[str, int] = LRUCache(maxsize=_CACHED_TEXTS)
        self._failed = ""  # why a tokenize endpoint that is there could not be used

    @property
    def root(self) -> str:
        """The server's root URL (the API's without /v1)."""
        return self._root

    @property
    def exact(self) -> bool:
        """Whether counts come from the server's tokenizer."""
        return self._endpoint is not None

    @property
    def tokenizer_id(self) -> str:
        """Identifies the counts: stored counts from another tokenizer are redone."""
        if self._endpoint is not None:
            return f"server:{self._root}:{self._model}"
        return f"estimate:{self._model}:{self._estimator.version}"

    def describe(self) -> str:
        """How counts are made, for /model."""
        if self._endpoint is not None:
            return f"exact (POST {self._endpoint[0]})"
        if self._failed:
            return f"estimated (the server's tokenize endpoint failed: {self._failed})"
        return "estimated (the server has no tokenize endpoint)"

    async def _tokenize(
        self, path: str, field: str, text: str, client: AsyncOpenAI | None = None
    ) -> list[int]:
        body: dict[str, Any] = {field: text}
        if field == "prompt":
            body.update(model=self._model, add_special_tokens=False)
        found = await (client or self._client).post(
            f"{self._root}{path}", body=body, cast_to=object
        )
        tokens = found.get("tokens") if isinstance(found, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ValueError(f"{path} did not answer with a list of token ids")
        return tokens

    async def probe(self) -> None:
        """Find the server's tokenize endpoint and learn its template's framing; any failure
        means estimates (logged here, once)."""
        absent = (openai.NotFoundError, openai.UnprocessableEntityError, openai.BadRequestError)
        failures: list[str] = []
        for path, field in (("/extras/tokenize", "input"), ("/tokenize", "content"),
                            ("/tokenize", "prompt")):  # fmt: skip
            try:
                if await self._tokenize(path, field, "Hello world", self._probing):
                    self._endpoint = (path, field)
                    break
            except absent:
                continue  # not this server's way
            except (openai.APIError, httpx.HTTPError, ValueError) as exc:
                failures.append(f"POST {path} {_why(exc)}")
        if self._endpoint is None:
            self._failed = "; ".join(dict.fromkeys(failures))
            if self._failed:
                log.warning("%s: its tokenize endpoint failed (%s): token counts are estimated",
                            self._root, self._failed)  # fmt: skip
            else:
                log.info("%s has no tokenize endpoint: token counts are estimated", self._root)
            return
        try:
            # llama_cpp.server adds the model's BOS token to every text
            self._offset = len(await self._tokenize(*self._endpoint, "", self._probing))
            calibrated = await self._calibrate(self._endpoint)
        except (openai.APIError, httpx.HTTPError, ValueError) as exc:
            self._failed, calibrated = f"POST {self._endpoint[0]} {_why(exc)}", False
        if not calibrated:
            log.warning("%s: the chat template's framing could not be measured (%s); token "
                        "counts are estimated", self._root, self._failed or "refused")  # fmt: skip
            self._endpoint = None

    async def _reported(self, messages: list[dict[str, str]]) -> int:
        reply = await self._client.chat.completions.create(
            model=self._model,
            messages=cast("list[ChatCompletionMessageParam]", messages),
            max_tokens=1,
            temperature=0,
        )
        if reply.usage is None:
            raise ValueError("no usage")
        return int(reply.usage.prompt_tokens)

    async def _calibrate(self, endpoint: tuple[str, str]) -> bool:
        """Each role's framing and the generation prompt, from four prompts' reported sizes:
        a second system message, a second user message and an assistant-user pair each add
        their framing and their text to the first prompt."""
        s1, s2, u1, u2, a1 = "You answer briefly.", "Be kind.", "What is a token?", \
            "And a window?", "A piece of text."  # fmt: skip
        sizes = {
            text: len(await self._tokenize(*endpoint, text, self._probing)) - self._offset
            for text in (s1, s2, u1, u2, a1)
        }
        base = [("system", s1), ("user", u1)]
        prompts = [base, [("system", s1), ("system", s2), ("user", u1)],
                   [*base, ("user", u2)], [*base, ("assistant", a1), ("user", u2)]]  # fmt: skip
        try:
            first, system, user, pair = [
                await self._reported([{"role": r, "content": c} for r, c in p]) for p in prompts
            ]
        except (openai.APIStatusError, ValueError):
            return False  # a template that refuses two messages of one role in a row
        framing = {"system": system - first - sizes[s2], "user": user - first - sizes[u2]}
        framing["assistant"] = pair - first - framing["user"] - sizes[a1] - sizes[u2]
        generation = first - framing["system"] - framing["user"] - sizes[s1] - sizes[u1]
        if min(*framing.values(), generation) < 0:
            return False
        self._framing, self._generation = framing, generation
        return True

    async def text(self, text: str) -> int:
        """Tokens of plain text (no template); estimated without a tokenizer."""
        if self._endpoint is None:
            estimate = self._estimator.message({"role": "user", "content": text})
            return estimate - self._estimator.framing
        if not text:
            return 0
        cached = self._cache.get(text)
        if cached is None:
            cached = len(await self._tokenize(*self._endpoint, text)) - self._offset
            self._cache[text] = cached
        return cached

    async def message(self, message: Message) -> int:
        """Tokens one message adds to a prompt, its framing included."""
        if self._endpoint is None:
            return self._estimator.message(message)
        framing = self._framing.get(message["role"], self._framing.get("user", 0))
        return framing + await self.text(counted_text(message))

    async def declarations(self, tools: Sequence[ToolSpec]) -> int:
        """Tokens of tool declarations: their JSON text (see the module docstring)."""
        if not tools:
            return 0
        return await self.text(json.dumps([t.to_openai() for t in tools], ensure_ascii=False))

    async def prompt(self, messages: Sequence[Message]) -> int:
        """Tokens of a whole prompt, the generation prompt included."""
        if self._endpoint is None:
            return self._estimator.prompt(messages)
        return self._generation + sum([await self.message(m) for m in messages])

    def observe(self, messages: Sequence[Message], reported: int) -> None:
        """Learn from a prompt size the server reported (the estimate only)."""
        if self._endpoint is None:
            self._estimator.observe(messages, reported)
