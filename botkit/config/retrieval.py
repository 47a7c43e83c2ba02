"""The `[memory]`, `[knowledge]` and `[retrieval]` sections: what a prompt is given beyond the
kept window, and within how many tokens.

The embedder that turns text into vectors is `[embedder]` (botkit.config.embedders).
"""

from __future__ import annotations

from pydantic import Field

from botkit.config.section import Section

__all__ = ["KnowledgeConfig", "MemoryConfig", "RetrievalConfig"]


class MemoryConfig(Section):
    """Recall: the chat's own messages that fell out of the window, brought back when
    relevant to a new message."""

    # Whether a chat recalls is its setting `memory` ([defaults] memory, /memory on|off).
    # Tokens of recalled messages in one prompt, at most (counted by the chat's backend). The
    # history's share of the window shrinks by this much while memory is on, so the kept
    # window, and the cache of it, does not move with what is recalled.
    budget: int = Field(default=256, ge=16, le=32768)


class KnowledgeConfig(Section):
    """Documents a chat was given (/docs add, `botkit docs add`)."""

    # Tokens of document passages in one prompt, at most (counted by the chat's backend); the
    # history's share shrinks by this much while the chat has documents.
    budget: int = Field(default=512, ge=16, le=65536)
    # Chunk size and overlap, in the embedder's tokens.
    chunk_tokens: int = Field(default=200, ge=16, le=8192)
    chunk_overlap: int = Field(default=40, ge=0, le=4096)
    # Limits per file and per chat.
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    max_pages: int = Field(default=300, ge=1, le=100_000)
    max_documents: int = Field(default=50, ge=1, le=10_000)
    max_chunks: int = Field(default=5000, ge=1, le=10_000_000)
    # Seconds reading one file may take (a PDF is parsed in a child process, then killed).
    read_timeout: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False)


class RetrievalConfig(Section):
    """How both sources are searched and ranked."""

    # false: keywords only, no embedder is loaded ([embedder] is ignored).
    vectors: bool = True

    # Candidates each ranking (keywords, vectors) brings to the fusion.
    candidates: int = Field(default=20, ge=1, le=1000)
    # Reciprocal rank fusion's k: larger flattens the difference between ranks.
    rrf_k: int = Field(default=60, ge=1, le=10_000)
    # A chunk found by its vector alone counts as relevant from this cosine up (found by
    # keywords: always). all-MiniLM-L6-v2 scores related sentences 0.5-0.8 and unrelated
    # ones near 0.
    min_similarity: float = Field(default=0.3, ge=-1.0, le=1.0, allow_inf_nan=False)
    # Seconds a turn waits for its query's vector; past it the turn goes on with keywords
    # only (and /sources says so).
    query_timeout: float = Field(default=5.0, gt=0, le=600, allow_inf_nan=False)
    # Messages or chunks indexed per batch, off the reply's path.
    index_batch: int = Field(default=64, ge=1, le=4096)
    # Memory kept for the vector matrices of recently used chats.
    vector_cache_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # Vectors in one scope (a chat's memory or its documents) from which it also gets an
    # approximate index (faiss IVF, built in a thread); below it, search is exact. Exact
    # search costs about 150 ms a query at 1M vectors of 384 dimensions, ~3 ms at 20k.
    index_threshold: int = Field(default=20_000, ge=1)
