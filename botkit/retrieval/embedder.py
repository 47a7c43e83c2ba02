"""The Embedder protocol: text in, unit vectors out (for vector search and /embed).

An embedder is configured per bot (`[embedder]`): the bundled all-MiniLM-L6-v2 GGUF run
in-process by llama.cpp, an Ollama model (`/api/embed`), or an OpenAI-compatible server
(`/v1/embeddings`). Vectors are L2-normalised float32, so a dot product is the cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["Embedder", "EmbedderError", "Vectors"]

# One row per text, L2-normalised, float32.
Vectors = npt.NDArray[np.float32]


class EmbedderError(Exception):
    """The embedder failed (down, slow, garbage); the message says what, for the chat and the
    log, without secrets. Retrieval goes on without vectors."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors."""

    # Identifies the vectors: stored beside each one, and a change re-indexes
    # (e.g. "llamacpp:all-MiniLM-L6-v2-f16.gguf", "ollama:nomic-embed-text").
    name: str

    @property
    def dimensions(self) -> int:
        """Length of each vector (known once started)."""
        ...

    @property
    def max_tokens(self) -> int:
        """The most tokens one text may have (longer ones are cut by the embedder)."""
        ...

    async def start(self) -> None:
        """Load the model or reach the server (raises EmbedderError with a clear message)."""

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per text, in order (raises EmbedderError; bounded by a timeout)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in text by the embedder's tokenizer, or an estimate where the server has no
        tokenizer endpoint (sizes chunks; the prompt is counted by the chat backend)."""
        ...

    async def close(self) -> None:
        """Release the model or the connection."""
