"""The Ollama embedder: `POST /api/embed` through the official client (`AsyncClient.embed`).

Ollama normalises the vectors and cuts a text longer than the model's context itself
(`truncate`, on by default). It embeds a bare empty string as no vector at all (server/routes.go,
EmbedHandler: a string input is used only when non-empty), so the texts always go as a list,
where an empty one is embedded like any other. Ollama has no tokenize endpoint: token counts
are an estimate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pydantic
from ollama import AsyncClient, ResponseError

from botkit.config.embedders import OllamaEmbedderConfig
from botkit.retrieval.embed_checks import embed_batches, estimate_tokens, unit_vectors
from botkit.retrieval.embedder import EmbedderError, Vectors

__all__ = ["OllamaEmbedder"]

_DEFAULT_MAX_TOKENS = 512  # BERT-family embedding models, when /api/show does not say


class OllamaEmbedder:
    """An embedding model served by Ollama."""

    def __init__(self, config: OllamaEmbedderConfig) -> None:
        self.config = config
        self.name = f"ollama:{config.model}"
        self._client = AsyncClient(host=config.host, timeout=httpx.Timeout(config.timeout))
        self._where = f"Ollama at {config.host} (model {config.model!r})"
        self._dims = 0
        self._max_tokens = _DEFAULT_MAX_TOKENS

    @property
    def dimensions(self) -> int:
        """The vectors' length, learnt at start."""
        if not self._dims:
            raise EmbedderError(f"embedder {self.name} is not started")
        return self._dims

    @property
    def max_tokens(self) -> int:
        """The model's context length from /api/show (512 when it does not say)."""
        return self._max_tokens

    async def _call(self, work: Any) -> Any:
        """Await a client call within the timeout; every failure as an EmbedderError."""
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.timeout):
                return await work
        except ResponseError as exc:
            if exc.status_code == 404:
                raise EmbedderError(
                    f"{self._where}: the model is not there; pull it with `ollama pull {cfg.model}`"
                ) from None
            raise EmbedderError(
                f"{self._where} answered {exc.status_code}: {str(exc.error)[:300]}"
            ) from None
        except (TimeoutError, httpx.TimeoutException):
            raise EmbedderError(f"{self._where} did not answer within {cfg.timeout:g} s") from None
        except (ConnectionError, httpx.ConnectError):
            raise EmbedderError(f"{self._where} is not reachable: is Ollama running?") from None
        except httpx.TransportError as exc:
            raise EmbedderError(
                f"the connection to {self._where} failed: {type(exc).__name__}"
            ) from None
        except (json.JSONDecodeError, pydantic.ValidationError, TypeError):
            raise EmbedderError(
                f"{self._where} answered with something that is not an /api/embed reply"
            ) from None

    async def _batch(self, texts: Sequence[str]) -> Vectors:
        reply = await self._call(self._client.embed(self.config.model, list(texts), truncate=True))
        return unit_vectors(reply.embeddings, len(texts), self._dims or None, self._where)

    async def start(self) -> None:
        """Reach the server: the model's context length, and its vectors' length."""
        try:
            show = await self._call(self._client.show(self.config.model))
            info = dict(show.modelinfo or {})
            length = info.get(f"{info.get('general.architecture', '')}.context_length")
            if isinstance(length, int) and length > 0:
                self._max_tokens = length
        except EmbedderError:
            pass  # /api/show is not needed to embed; /api/embed below says what is wrong
        self._dims = len((await self._batch(["botkit"]))[0])

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per text, batch_size texts a request."""
        return await embed_batches(texts, self.config.batch_size, self.dimensions, self._batch)

    def count_tokens(self, text: str) -> int:
        """An estimate (Ollama cannot tokenize over its API) that errs high."""
        return estimate_tokens(text)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]
