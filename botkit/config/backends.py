"""The `[backends.NAME]` sections: llama.cpp in-process, Ollama, an OpenAI-compatible server.

`BackendConfig` is their union, told apart by `kind` (llama.cpp when it is left out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from botkit.config.gguf_source import GgufSource
from botkit.config.section import Section

__all__ = ["BackendConfig", "LlamaCppConfig", "OllamaConfig", "OpenAIConfig"]


class LlamaCppConfig(GgufSource):
    """An in-process llama.cpp model (a GGUF file)."""

    kind: Literal["llamacpp"] = "llamacpp"
    # model_path or model (GgufSource); neither: the bundled SmolLM2-135M.
    n_ctx: int = Field(default=2048, ge=256, le=131072)
    # Threads for replies and prompts alike; None: llama_slots.llama_threads chooses.
    n_threads: int | None = Field(default=None, ge=1, le=512)
    n_batch: int = Field(default=512, ge=16, le=8192)
    state_cache_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    # Chats generated at once from one batched context (continuous batching). 1: one reply at
    # a time. Each slot holds a full n_ctx of KV cache, so memory grows with it (/model shows
    # it); on a CPU the gain is 1.4-1.8x at 8 chats, more on a GPU. "auto": see
    # backends/llamacpp.py choose_slots (cores, the model's KV size, free memory, n_batch).
    parallel: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    # A LoRA adapter (GGUF, from llama.cpp's convert_lora_to_gguf.py) applied on top of the
    # model, and how strongly: W + lora_scale × (alpha / rank) × BA. 0 turns it off.
    lora_path: Path | None = None
    lora_scale: float = Field(default=1.0, ge=0.0, le=4.0, allow_inf_nan=False)
    # Seconds a reply may wait for its next piece from llama.cpp (a prompt being read counts):
    # past it the reply is ended as interrupted with a clear message, not waited on for ever.
    stall_timeout: float = Field(default=300.0, gt=0, le=86400, allow_inf_nan=False)

    @model_validator(mode="after")
    def _batch_holds_every_slot(self) -> LlamaCppConfig:
        # Every step decodes a token of each generating chat: they must fit in one batch.
        if self.parallel != "auto" and self.parallel * 2 > min(self.n_batch, self.n_ctx):
            raise ValueError(
                f"parallel = {self.parallel} needs n_batch of at least {self.parallel * 2} "
                "(a token of every chat, and room for prompts)"
            )
        return self

    @property
    def window_hint(self) -> int:
        """The context window as far as the config alone tells."""
        return self.n_ctx


class OllamaConfig(Section):
    """A model served by an Ollama daemon, local or remote."""

    kind: Literal["ollama"]
    host: str = Field(default="http://127.0.0.1:11434", pattern=r"^https?://")
    model: str = Field(min_length=1, max_length=200)
    # Ollama silently drops the start of a prompt longer than num_ctx, so botkit always sends
    # it: this value, or the model's trained context length (from /api/show) capped by
    # max_num_ctx.
    num_ctx: int | None = Field(default=None, ge=256, le=1_048_576)
    max_num_ctx: int = Field(default=8192, ge=256, le=1_048_576)
    keep_alive: str | int = "5m"
    parallel: int = Field(default=1, ge=1, le=64)
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    read_timeout: float = Field(default=300.0, gt=0, le=3600)
    # Whether the model can see images: "auto" reads /api/show's capabilities ("vision"); a
    # server too old to list them is taken as blind unless this says true (Ollama drops the
    # images of a model that cannot see without a word: backends/ollama_vision.py).
    vision: Literal["auto"] | bool = "auto"

    @property
    def window_hint(self) -> int:
        """The context window as far as the config alone tells."""
        return self.num_ctx or self.max_num_ctx


class OpenAIConfig(Section):
    """A model behind an OpenAI-compatible server: llama.cpp's llama-server, vLLM, SGLang,
    LM Studio, LocalAI, llama_cpp.server, or a hosted service."""

    kind: Literal["openai"]
    # The API root, with its version: http://127.0.0.1:8080/v1
    base_url: str = Field(pattern=r"^https?://[^\s]+$", max_length=500)
    model: str = Field(min_length=1, max_length=200)
    # The API key comes from this environment variable or the systemd credential of this
    # name, never from this file; local servers usually need none.
    api_key_env: str = Field(default="BOTKIT_OPENAI_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    credential: str = Field(default="openai_api_key", pattern=r"^[A-Za-z0-9_.-]+$")
    # The context length, used when the server does not report one (vLLM's max_model_len,
    # llama-server's n_ctx do); without either, 4096 is assumed and a warning logged.
    n_ctx: int | None = Field(default=None, ge=256, le=1_048_576)
    # top_k, min_p and repeat_penalty are not in the OpenAI API: they are sent in the request
    # body under llama.cpp's and vLLM's names. Set false for a server that refuses unknown
    # fields (OpenAI's own); /settings then marks them as ignored.
    sampling_extensions: bool = True
    parallel: int = Field(default=4, ge=1, le=256)
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    # The longest wait for the next piece of a reply; SSE keep-alive comments do not count.
    read_timeout: float = Field(default=300.0, gt=0, le=3600)
    # The longest a whole reply may take, from the request to its last piece; a reply still
    # streaming then is cut there and stored as interrupted.
    reply_timeout: float = Field(default=600.0, gt=0, le=86400)
    # A busy server (429, 503) is asked again this many times, with the client's backoff
    # (it honours Retry-After), before the chat is told.
    max_retries: int = Field(default=3, ge=0, le=10)
    # Whether the model can see images: "auto" asks llama-server's GET /props
    # (modalities.vision); a server that does not say (OpenAI's API, vLLM, llama_cpp.server)
    # is taken as blind unless this says true (backends/openai_vision.py).
    vision: Literal["auto"] | bool = "auto"

    @property
    def window_hint(self) -> int:
        """The context window as far as the config alone tells."""
        return self.n_ctx or 4096


def _backend_kind(value: Any) -> str:
    # `kind` may be left out for the default, in-process llama.cpp.
    if isinstance(value, dict):
        return str(value.get("kind", "llamacpp"))
    return str(getattr(value, "kind", "llamacpp"))


BackendConfig = Annotated[
    Annotated[LlamaCppConfig, Tag("llamacpp")]
    | Annotated[OllamaConfig, Tag("ollama")]
    | Annotated[OpenAIConfig, Tag("openai")],
    Discriminator(_backend_kind),
]
