"""The OpenAI-compatible embedder: `POST /v1/embeddings` through the official `openai` client.

Served by OpenAI, llama.cpp's llama-server and llama_cpp.server (with --embedding), vLLM,
LM Studio, LocalAI. The client asks for base64 unless told otherwise and decodes it; servers
that ignore the field (llama_cpp.server) answer with lists of floats, which it takes as they are.
Some servers do not normalise (llama_cpp.server), so every vector is normalised here. The API
has no tokenizer endpoint: token counts are an estimate, and the model's input limit comes from
the config (`max_tokens`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import openai
import pydantic
from openai import AsyncOpenAI

from botkit.backends.openai_errors import error_message
from botkit.config.embedders import OpenAIEmbedderConfig
from botkit.retrieval.embed_checks import embed_batches, estimate_tokens, unit_vectors
from botkit.retrieval.embedder import EmbedderError, Vectors
from botkit.secrets import read_secret

__all__ = ["OpenAIEmbedder"]


class OpenAIEmbedder:
    """An embedding model behind an OpenAI-compatible server."""

    def __init__(self, config: OpenAIEmbedderConfig) -> None:
        self.config = config
        self.name = f"openai:{config.base_url.rstrip('/')}:{config.model}"
        key = read_secret(config.api_key_env, config.credential)
        self._has_key = key is not None
        self._client = AsyncOpenAI(
            base_url=config.base_url,
            api_key=key or "no-key",  # the client needs one; servers without auth ignore it
            timeout=httpx.Timeout(config.timeout),
            max_retries=config.max_retries,
        )
        self._where = f"the embedding server at {config.base_url} (model {config.model!r})"
        self._dims = 0

    @property
    def dimensions(self) -> int:
        """The vectors' length, learnt at start."""
        if not self._dims:
            raise EmbedderError(f"embedder {self.name} is not started")
        return self._dims

    @property
    def max_tokens(self) -> int:
        """The model's input limit, as configured (the API does not report it)."""
        return self.config.max_tokens

    def _failure(self, exc: Exception) -> EmbedderError:
        cfg = self.config
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            what = "refused the API key" if self._has_key else "needs an API key"
            return EmbedderError(
                f"{self._where} {what} ({exc.status_code}): set it in "
                f"${cfg.api_key_env} or the systemd credential "
                f"{cfg.credential!r}"
            )
        if isinstance(exc, openai.NotFoundError):
            return EmbedderError(
                f"{self._where}: the model is not served there (404: {error_message(exc)})"
            )
        if isinstance(exc, openai.APIStatusError):
            return EmbedderError(f"{self._where} answered {exc.status_code}: {error_message(exc)}")
        if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx.TimeoutException):
            return EmbedderError(f"{self._where} did not answer within {cfg.timeout:g} s")
        if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
            return EmbedderError(f"{self._where} is not reachable: is it running?")
        return EmbedderError(
            f"{self._where} answered with something that is not an embeddings reply"
        )

    async def _batch(self, texts: Sequence[str]) -> Vectors:
        try:
            async with asyncio.timeout(self.config.timeout):
                reply: Any = await self._client.embeddings.create(
                    model=self.config.model, input=list(texts)
                )
            data = sorted(reply.data, key=lambda d: d.index)
            if [d.index for d in data] != list(range(len(data))):
                raise EmbedderError(
                    f"{self._where} returned vectors with indexes "
                    f"{[d.index for d in data][:10]}, not 0..{len(texts) - 1}"
                )
            rows = [d.embedding for d in data]
        except EmbedderError:
            raise
        except (TimeoutError, openai.APIError, httpx.TransportError) as exc:
            raise self._failure(exc) from None
        except (pydantic.ValidationError, TypeError, AttributeError, ValueError) as exc:
            raise self._failure(exc) from None
        return unit_vectors(rows, len(texts), self._dims or None, self._where)

    async def start(self) -> None:
        """Reach the server and learn the vectors' length."""
        self._dims = len((await self._batch(["botkit"]))[0])

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per text, batch_size texts a request."""
        return await embed_batches(texts, self.config.batch_size, self.dimensions, self._batch)

    def count_tokens(self, text: str) -> int:
        """An estimate (the API has no tokenizer endpoint) that errs high."""
        return estimate_tokens(text)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()
