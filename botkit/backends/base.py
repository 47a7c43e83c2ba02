"""The Backend protocol: what the core needs from a model, and the typed errors it may raise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal, NotRequired, Protocol, TypedDict, runtime_checkable

import numpy as np
import numpy.typing as npt

from botkit.core.settings import SamplingOptions
from botkit.images.spec import Image
from botkit.tools.spec import ToolCall, ToolChoice, ToolSpec

__all__ = [
    "Backend",
    "BackendBusy",
    "BackendError",
    "BackendInfo",
    "BackendUnavailable",
    "BackendUnreachable",
    "Chunk",
    "ContextOverflow",
    "GenerationParams",
    "Health",
    "LoraAdapter",
    "Message",
    "ModelNotFound",
    "PrefixCache",
    "Role",
    "TokenInspector",
    "ToolCalling",
    "Usage",
    "Vision",
    "WindowLearned",
    "generation_speed",
]


class Role(StrEnum):
    """Who says a message: the roles every chat template knows (stored in messages.role)."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"  # a tool's result, given back to the model (after the call's assistant row)


class Message(TypedDict):
    """One chat message in the role/content shape every chat template understands."""

    # A Role, or its value written out: a StrEnum member is equal to its value, and the
    # literal spelling keeps message literals ({"role": "user", ...}) short.
    role: Role | Literal["system", "user", "assistant", "tool"]
    content: str
    # An assistant message that called tools: the calls in OpenAI's shape (tools.spec.wire_call);
    # each backend converts them to its own.
    tool_calls: NotRequired[list[dict[str, Any]]]
    # A tool message: the call it answers, and the tool's name.
    tool_call_id: NotRequired[str]
    name: NotRequired[str]
    # A user message's pictures (only given to a backend that can see; see Vision). Each
    # backend sends them its own way: Ollama `images`, OpenAI `image_url` parts, llama.cpp
    # through its multimodal projector.
    images: NotRequired[list[Image]]


class GenerationParams(SamplingOptions):
    """Sampling options for one reply (declared in core/settings.py). seed is the concrete seed
    (never -1 here).

    repeatable: the chat fixed its seed, so the same history must give the same reply whatever
    a backend had cached (llama.cpp then evaluates every prompt in one batch shape).
    """

    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one generation, why it stopped, and how long its parts took.

    None means the backend does not report that figure (/stats says so rather than guess).
    """

    prompt_tokens: int
    completion_tokens: int
    # "tool_calls": the model called tools (the last chunk carries the calls).
    stop_reason: Literal["stop", "length", "cancelled", "tool_calls"]
    # Prompt tokens whose keys and values came from the KV cache instead of being evaluated.
    cached_prompt_tokens: int | None = 0
    prefill_seconds: float | None = None  # evaluating the prompt tokens that were not cached
    # From the moment the backend took the reply (after the scheduler's queue) to the first token.
    first_token_seconds: float | None = None
    tokens_per_second: float | None = None  # generation speed after the first token
    # llama.cpp: the chat's saved KV state was loaded back (another chat had the context).
    state_restored: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON object (stored with the reply for /stats)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Usage:
        """Usage from to_json()'s object (keys it does not know are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def generation_speed(tokens: int, first: float | None, end: float) -> float | None:
    """Tokens per second after the first token (which waited for the prefill): tokens 2..n
    over the time from the first token to end; None when there is nothing to measure."""
    if first is None or tokens < 2 or end <= first:
        return None
    return (tokens - 1) / (end - first)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of streamed reply text; the last chunk of a stream carries usage, and the tool
    calls the model made, if any (whole, once every fragment has come)."""

    text: str
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class LoraAdapter:
    """A LoRA adapter applied to a model: W + scale × (alpha / rank) × BA on its targets."""

    file: str
    rank: int
    alpha: float  # 0: llama.cpp then applies scale alone, without alpha / rank
    scale: float
    targets: tuple[str, ...]  # the adapted weight matrices, e.g. ("blk.0.attn_q.weight", ...)
    parameters: int = 0  # in all A and B matrices: what fine-tuning trained

    @property
    def multiplier(self) -> float:
        """What BA is multiplied by before it is added (llama.cpp: scale × alpha / rank)."""
        return self.scale * self.alpha / self.rank if self.alpha and self.rank else self.scale


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
    lora: LoraAdapter | None = None


class BackendError(Exception):
    """A backend could not produce a reply; the message is fit to show to the user."""


class BackendUnavailable(BackendError):
    """The backend is down, unreachable or failed to load."""


class BackendUnreachable(BackendUnavailable):
    """What the backend needs cannot be reached now (the network, the Hub a model comes from,
    a server answering 5xx): the same start later may work."""


class BackendBusy(BackendError):
    """Too many replies are already waiting for this backend."""


class ModelNotFound(BackendError):
    """The configured model does not exist on the backend."""


class ContextOverflow(BackendError):
    """The prompt plus the reply reserve does not fit the context window."""


class WindowLearned(ContextOverflow):
    """The server refused the prompt and named its context window, which the backend now uses
    as its context_window: plan the turn again (raised before anything was streamed)."""


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
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        """Stream a reply. cache_key names the conversation, for backends that cache state.

        tools: what the model may call (only given to a ToolCalling backend whose
        tool_support() is None); tool_choice: "auto", "none", or the one tool it must call."""
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


@runtime_checkable
class ToolCalling(Protocol):
    """A backend whose model can call tools: it takes `tools` in stream() and ends a reply that
    calls them with a chunk carrying the calls (stop_reason "tool_calls")."""

    async def tool_support(self) -> str | None:
        """None when this model can call tools; otherwise why not, in words (/tools and /model
        show it, and the chat goes on without tools)."""
        ...

    async def tool_tokens(self, tools: Sequence[ToolSpec]) -> int:
        """Tokens these declarations add to a prompt (they cost window, like the persona)."""
        ...


@runtime_checkable
class Vision(Protocol):
    """A backend that may see images: whether this model can is asked, never guessed from its
    name (Ollama's `/api/show` capabilities, the GGUF's projector, the server's model info)."""

    async def vision_support(self) -> str | None:
        """None when this model can see images; otherwise why not, in words (/model shows
        it, and a chat's image then goes to [vision] backend to be described, or is refused)."""
        ...

    async def image_tokens(self, image: Image) -> int:
        """Tokens this image costs in a prompt (the projector's, counted or asked where the
        backend can, else the documented estimate)."""
        ...


@runtime_checkable
class PrefixCache(Protocol):
    """A backend that keeps each chat's evaluated prompt (its KV cache) between turns, so the
    next turn evaluates only what is new (llama.cpp)."""

    async def cached_prefix(self, messages: Sequence[Message], cache_key: str) -> int:
        """How many leading tokens of these messages (as a prompt, without the generation
        prompt) the chat's KV cache holds now, live or saved."""
        ...


@runtime_checkable
class Health(Protocol):
    """A backend that can fail for good while running (llama.cpp's batch loop): the service
    stops its watchdog pings then, so systemd restarts the process."""

    @property
    def failure(self) -> str | None:
        """Why the backend can no longer generate; None while it can."""
        ...
