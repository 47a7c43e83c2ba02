"""Checking what an embedder returned before anything stores it, and the helpers every
embedder shares: batching and the token estimate for servers without a tokenizer endpoint.

A server can answer 200 with the wrong thing: fewer vectors than texts, a vector of another
length than before (the model behind the name was swapped), NaN from a broken model, an empty
list. Stored, such a vector would corrupt the index silently, so each is refused here with a
message that says which.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import numpy as np

from botkit.retrieval.embedder import EmbedderError, Vectors

__all__ = ["batches", "estimate_tokens", "unit_vectors"]


def batches(texts: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """texts in consecutive slices of at most size."""
    for start in range(0, len(texts), size):
        yield texts[start : start + size]


async def embed_batches(
    texts: Sequence[str],
    size: int,
    dimensions: int,
    one: Callable[[Sequence[str]], Awaitable[Vectors]],
) -> Vectors:
    """One vector per text: `one` embeds each slice of at most size texts, in order."""
    out = [np.zeros((0, dimensions), np.float32)]
    for batch in batches(texts, size):
        out.append(await one(batch))
    return np.concatenate(out)


def estimate_tokens(text: str) -> int:
    """An estimate that errs high: a token per three UTF-8 bytes (English runs nearer four or
    five characters a token; a CJK character is three bytes and about one token), plus two for
    the start and end tokens."""
    return math.ceil(len(text.encode("utf-8", "replace")) / 3) + 2


def unit_vectors(rows: Any, count: int, dimensions: int | None, where: str) -> Vectors:
    """rows as count L2-normalised float32 vectors of the given length (None: any, the same
    for all); EmbedderError saying what is wrong otherwise."""
    if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
        raise EmbedderError(f"{where} returned no list of vectors")
    if len(rows) != count:
        raise EmbedderError(f"{where} returned {len(rows)} vectors for {count} texts")
    if count == 0:
        return np.zeros((0, dimensions or 0), np.float32)
    lengths = {len(r) if isinstance(r, Sequence) and not isinstance(r, str) else -1 for r in rows}
    if -1 in lengths:
        raise EmbedderError(f"{where} returned a vector that is not a list of numbers")
    if 0 in lengths:
        raise EmbedderError(f"{where} returned an empty vector")
    expected = dimensions or len(rows[0])  # the first one sets the length for the rest
    wrong = sorted(n for n in lengths if n != expected)
    if wrong:
        raise EmbedderError(
            f"{where} returned vectors of {wrong[0]} numbers where {expected} were expected "
            "(was the model behind the name changed? change the embedder to re-index)"
        )
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmbedderError(f"{where} returned a vector that is not a list of numbers") from None
    if not np.isfinite(array).all():
        raise EmbedderError(f"{where} returned a vector with NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise EmbedderError(f"{where} returned an all-zero vector (it has no direction)")
    return np.asarray(array / norms, dtype=np.float32)
