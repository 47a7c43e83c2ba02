"""Fixtures for retrieval's unit tests: a migrated store in memory and a word-hashing embedder."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from botkit.retrieval.embedder import EmbedderError, Vectors
from botkit.store.db import create_engine, upgrade
from botkit.store.repository import Repository


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Repository]:
    """A repository on a fresh SQLite file, migrated (the keyword index is the migration's).
    A file, not memory: in memory every connection is one, and the indexer reads while the
    turn writes."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade(engine)
    repo = Repository(engine, cached_chats=4, owner="test")
    yield repo
    await repo.close()
    await engine.dispose()


class WordEmbedder:
    """A deterministic embedder for tests: each word hashed into one of 64 dimensions, so
    texts sharing words point the same way. It can be made to fail or to hang."""

    def __init__(self, name: str = "words") -> None:
        self.name = name
        self.fail: str | None = None
        self.hang = asyncio.Event()  # set: embed waits until released
        self.release = asyncio.Event()
        self.calls = 0

    @property
    def dimensions(self) -> int:
        return 64

    @property
    def max_tokens(self) -> int:
        return 512

    async def start(self) -> None:
        if self.fail:
            raise EmbedderError(self.fail)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        if self.fail:
            raise EmbedderError(self.fail)
        if self.hang.is_set():
            await self.release.wait()
        rows = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                rows[i, hashlib.sha256(word.encode()).digest()[0] % 64] += 1.0
            norm = float(np.linalg.norm(rows[i])) or 1.0
            rows[i] /= norm
        return rows

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))

    async def close(self) -> None:
        pass


@pytest.fixture
def embedder() -> WordEmbedder:
    return WordEmbedder()
