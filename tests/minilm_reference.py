"""A reference for the converted MiniLM GGUF: BERT's WordPiece tokenizer and forward pass in
numpy, from the same model.zip, written from the papers and Hugging Face's BertModel rather
than from the converter (so a wrong tensor name, a transposed matrix or a lost key in the GGUF
shows as a different vector).

Tokenizer: BERT's BasicTokenizer (lowercase, strip accents, split on whitespace and
punctuation) then greedy longest-match-first WordPiece with `##` continuations
(google-research/bert tokenization.py). Enough for the ASCII sentences the tests use.
Model: post-norm transformer encoder with GELU (erf), then sentence-transformers' mean pooling
and L2 normalisation (all-MiniLM-L6-v2's modules.json: Transformer, Pooling, Normalize).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

import numpy as np
import numpy.typing as npt

from botkit.retrieval.minilm_gguf import MiniLM

__all__ = ["embed_reference", "wordpiece"]

F32 = npt.NDArray[np.float32]


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    return re.findall(r"\w+|[^\w\s]", text)


def wordpiece(source: MiniLM, text: str) -> list[int]:
    """BERT's token ids for text: [CLS] pieces [SEP]."""
    vocab: dict[str, int] = source.tokenizer["model"]["vocab"]
    ids = [vocab["[CLS]"]]
    for word in _words(text):
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    break
                end -= 1
            if end == start:  # no piece fits: the whole word is [UNK]
                pieces = [vocab["[UNK]"]]
                break
            start = end
        ids += pieces
    return [*ids, vocab["[SEP]"]]


def _norm(x: F32, w: Any, b: Any, eps: float) -> F32:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + eps) * w + b, dtype=np.float32)


def _gelu(x: F32) -> F32:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(0.5 * x * (1.0 + erf(x / math.sqrt(2.0))), dtype=np.float32)


def embed_reference(source: MiniLM, ids: list[int]) -> F32:
    """The sentence vector of the token ids: BERT encoder, mean pooling, L2 norm."""
    t = source.tensors
    cfg = source.config
    eps = float(cfg["layer_norm_eps"])
    heads = int(cfg["num_attention_heads"])
    n = len(ids)
    x = (
        t["embeddings.word_embeddings.weight"][ids]
        + t["embeddings.position_embeddings.weight"][:n]
        + t["embeddings.token_type_embeddings.weight"][0]
    )
    x = _norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    for i in range(int(cfg["num_hidden_layers"])):
        p = f"encoder.layer.{i}."

        def dense(h: F32, name: str, p: str = p) -> F32:
            # torch's Linear: y = x W^T + b, W stored [out, in]
            return np.asarray(h @ t[p + name + ".weight"].T + t[p + name + ".bias"], np.float32)

        q, k, v = (dense(x, f"attention.self.{m}") for m in ("query", "key", "value"))
        d = q.shape[-1] // heads
        qh, kh, vh = (m.reshape(n, heads, d).transpose(1, 0, 2) for m in (q, k, v))
        scores = qh @ kh.transpose(0, 2, 1) / math.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ vh
        context = attn.transpose(1, 0, 2).reshape(n, heads * d).astype(np.float32)
        x = _norm(
            x + dense(context, "attention.output.dense"),
            t[p + "attention.output.LayerNorm.weight"],
            t[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        h = dense(_gelu(dense(x, "intermediate.dense")), "output.dense")
        x = _norm(x + h, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return np.asarray(pooled / np.linalg.norm(pooled), dtype=np.float32)
