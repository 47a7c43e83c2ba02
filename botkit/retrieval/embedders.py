"""make_embedder: the one place that knows the concrete embedder classes."""

from __future__ import annotations

from botkit.config.embedders import (
    EmbedderConfig,
    OllamaEmbedderConfig,
    OpenAIEmbedderConfig,
)
from botkit.retrieval.embedder import Embedder

__all__ = ["make_embedder"]


def make_embedder(config: EmbedderConfig) -> Embedder:
    """The embedder a config describes (not started: call `start()`)."""
    if isinstance(config, OllamaEmbedderConfig):
        from botkit.retrieval.embed_ollama import OllamaEmbedder

        return OllamaEmbedder(config)
    if isinstance(config, OpenAIEmbedderConfig):
        from botkit.retrieval.embed_openai import OpenAIEmbedder

        return OpenAIEmbedder(config)
    from botkit.retrieval.embed_llama import LlamaCppEmbedder

    return LlamaCppEmbedder(config)
