"""The Backend protocol: what the core needs from a model, and the typed errors it may raise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict, runtime_checkable

import numpy as np
import numpy.typing as npt

from botkit.core.settings import SamplingOptions

__all__ = [
    "Backend",
    "BackendBusy",
    "BackendError",
    "BackendInfo",
    "BackendUnavailable",
    "Chunk",
    "ContextOverflow",
    "GenerationParams",
    "Message",
    "ModelNotFound",
    "TokenInspector",
    "Usage",
]

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    """One chat message in the role/content shape every chat template understands."""

    role: Role
    content: str


class GenerationParams(SamplingOptions):
    """Sampling options for one reply (declared in core/settings.py). seed is the concrete seed
    (never -1 here).

    repeatable: the chat fixed its seed, so the same history must give the same reply whatever
    a backend had cached (llama.cpp then evaluates every prompt in one batch shape).
    """

    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one generation, and why it stopped."""

    prompt_tokens: int
    completion_tokens: int
    stop_reason: Literal["stop", "length", "cancelled"]
    cached_prompt_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of streamed reply text; the last chunk of a stream carries usage."""

    text: str
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What /model shows about the loaded model."""

    backend: str
    kind: str
    model_name: str
    parameters: int | None
    quantization: str | None
    context_length: int
    trained_context_length: int | None
    file_size: int | None
    extra: dict[str, str] = field(default_factory=dict)
    # Bytes the KV cache needs per token of context (keys and values, all layers), if known.
    kv_bytes_per_token: int | None = None
    slots: int = 1  # chats generated at once, each with a full context window of KV cache


class BackendError(Exception):
    """A backend could not produce a reply; the message is fit to show to the user."""


class BackendUnavailable(BackendError):
    """The backend is down, unreachable or failed to load."""


class BackendBusy(BackendError):
    """Too many replies are already waiting for this backend."""


class ModelNotFound(BackendError):
    """The configured model does not exist on the backend."""


class ContextOverflow(BackendError):
    """The prompt plus the reply reserve does not fit the context window."""


class Backend(Protocol):
    """A model that streams chat replies and counts tokens with its own tokenizer."""

    name: str

    @property
    def context_window(self) -> int:
        """Tokens the model sees at once: prompt plus reply."""
        ...

    @property
    def tokenizer_id(self) -> str:
        """Identifies the tokenizer, so stored token counts from another one are recounted."""
        ...

    @property
    def max_parallel(self) -> int:
        """How many generations may run at once on this backend."""
        ...

    @property
    def ignored_settings(self) -> frozenset[str]:
        """Sampling options this backend cannot apply (/settings marks them)."""
        ...

    async def start(self) -> None:
        """Load the model or connect; raises BackendUnavailable or ModelNotFound."""

    async def close(self) -> None:
        """Release the model or connection."""

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length of these messages, chat template and generation prompt included."""
        ...

    async def message_tokens(self, message: Message) -> int:
        """Tokens one message adds to a prompt (its content plus the template's framing)."""
        ...

    def stream(
        self, messages: Sequence[Message], params: GenerationParams, *, cache_key: str
    ) -> AsyncIterator[Chunk]:
        """Stream a reply. cache_key names the conversation, for backends that cache state."""
        ...

    async def info(self) -> BackendInfo:
        """Model name, size, quantization and context length."""
        ...


@runtime_checkable
class TokenInspector(Protocol):
    """A backend that can show its tokenizer and its raw next-token logits (llama.cpp)."""

    async def tokenize(self, text: str) -> list[int]:
        """Token ids of text, without any template."""
        ...

    async def token_pieces(self, token_ids: Sequence[int]) -> list[str]:
        """The text of each token."""
        ...

    async def next_token_logits(
        self, messages: Sequence[Message], continuation: str = ""
    ) -> npt.NDArray[np.float32]:
        """Raw logits over the whole vocabulary for the token after this prompt.

        continuation is text the reply has already begun with (after the generation prompt).
        """
        ...
