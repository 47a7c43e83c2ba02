"""Next-token sampling, computed exactly as llama.cpp's sampler chain does it, for /probs.

llama-cpp-python builds the chain penalties → top-k → typical → top-p → min-p → temperature →
random draw. Top-k, top-p and min-p therefore cut on the model's own probabilities, and the
temperature then reshapes the probabilities of the tokens that survived.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Cut", "sample_distribution", "softmax"]

Floats = npt.NDArray[np.float64]


def softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> Floats:
    """Probabilities from logits divided by the temperature (numerically stable)."""
    values = np.asarray(logits, dtype=np.float64) / temperature
    values = values - np.max(values)
    exp = np.exp(values)
    result: Floats = exp / exp.sum()
    return result


@dataclass(frozen=True, slots=True)
class Cut:
    """The distribution after the sampling settings, over the whole vocabulary."""

    raw: Floats  # softmax of the raw logits
    final: Floats  # after top-k, top-p, min-p and temperature; 0 for tokens cut
    survivors: int


def sample_distribution(
    logits: npt.ArrayLike, *, temperature: float, top_k: int, top_p: float, min_p: float
) -> Cut:
    """Apply the sampling settings to raw logits; returns raw and final probabilities."""
    raw_logits = np.asarray(logits, dtype=np.float64)
    raw = softmax(raw_logits)
    order = np.argsort(-raw_logits, kind="stable")
    keep = order
    if top_k > 0:
        keep = keep[:top_k]
    probs = softmax(raw_logits[keep])  # renormalised over the candidates still in play
    if top_p < 1.0:
        # The smallest prefix whose probabilities reach top_p (llama.cpp keeps at least one).
        count = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        keep, probs = keep[:count], softmax(raw_logits[keep[:count]])
    if min_p > 0.0:
        mask = probs >= min_p * probs[0]
        keep = keep[mask]
    final = np.zeros_like(raw)
    if temperature <= 0.0:
        final[keep[0]] = 1.0  # greedy: the likeliest token, always
    else:
        final[keep] = softmax(raw_logits[keep], temperature)
    return Cut(raw=raw, final=final, survivors=len(keep))
