"""The `[embedder]` section: which model turns text into vectors for retrieval.

In-process llama.cpp (the default: all-MiniLM-L6-v2, converted to GGUF at first use), an Ollama
model (`/api/embed`) or an OpenAI-compatible server (`/v1/embeddings`). `EmbedderConfig` is
their union, told apart by `kind` (llama.cpp when it is left out). Changing the embedder
changes the vectors' identity (`Embedder.name`), so everything is indexed again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from botkit.config.gguf_source import GgufSource
from botkit.config.section import Section

__all__ = [
    "EmbedderConfig",
    "LlamaCppEmbedderConfig",
    "OllamaEmbedderConfig",
    "OpenAIEmbedderConfig",
]


class _Common(Section):
    # The longest one request (a batch) may take, in seconds; past it the embedder fails with
    # a clear message and retrieval goes on with keywords alone.
    timeout: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False)
    # Texts per request (per llama.cpp call in-process).
    batch_size: int = Field(default=32, ge=1, le=2048)


class LlamaCppEmbedderConfig(_Common, GgufSource):
    """An embedding GGUF run in-process by llama.cpp."""

    kind: Literal["llamacpp"] = "llamacpp"
    # model_path or model (GgufSource, an embedding model); neither: the bundled
    # all-MiniLM-L6-v2.
    # None: llama.cpp's default (the machine's cores, up to a limit).
    n_threads: int | None = Field(default=None, ge=1, le=512)


class OllamaEmbedderConfig(_Common):
    """An embedding model served by Ollama (`ollama pull nomic-embed-text`)."""

    kind: Literal["ollama"]
    host: str = Field(default="http://127.0.0.1:11434", pattern=r"^https?://")
    model: str = Field(min_length=1, max_length=200)


class OpenAIEmbedderConfig(_Common):
    """An embedding model behind an OpenAI-compatible `/v1/embeddings` (llama-server with
    --embedding, vLLM, LM Studio, a hosted service)."""

    kind: Literal["openai"]
    # The API root, with its version: http://127.0.0.1:8080/v1
    base_url: str = Field(pattern=r"^https?://[^\s]+$", max_length=500)
    model: str = Field(min_length=1, max_length=200)
    # The API key comes from this environment variable or the systemd credential of this
    # name, never from this file; local servers usually need none.
    api_key_env: str = Field(default="BOTKIT_OPENAI_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    credential: str = Field(default="openai_api_key", pattern=r"^[A-Za-z0-9_.-]+$")
    # The model's input limit in tokens (the API does not say it): chunks are sized to fit.
    # BERT-family models take 512, OpenAI's text-embedding-3 8191.
    max_tokens: int = Field(default=512, ge=16, le=1_000_000)
    # A busy server (429, 5xx) is asked again this many times with the client's backoff,
    # within `timeout`.
    max_retries: int = Field(default=2, ge=0, le=10)


def _embedder_kind(value: Any) -> str:
    # `kind` may be left out for the default, in-process llama.cpp.
    if isinstance(value, dict):
        return str(value.get("kind", "llamacpp"))
    return str(getattr(value, "kind", "llamacpp"))


EmbedderConfig = Annotated[
    Annotated[LlamaCppEmbedderConfig, Tag("llamacpp")]
    | Annotated[OllamaEmbedderConfig, Tag("ollama")]
    | Annotated[OpenAIEmbedderConfig, Tag("openai")],
    Discriminator(_embedder_kind),
]
