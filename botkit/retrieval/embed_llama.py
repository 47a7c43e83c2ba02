"""The in-process embedder: an embedding GGUF run by llama.cpp (`Llama(..., embedding=True)`).

The default model is all-MiniLM-L6-v2, converted from its PyPI wheel on first use
(minilm_gguf.py); a configured file or Hub model (a bge-small GGUF, say) replaces it.

llama.cpp's calls block for as long as the model computes, so they run on one worker thread
of this embedder's own (one model context is not safe to use from two threads at once), never
on the event loop. A batch that takes longer than `timeout` fails the call; the thread finishes
that batch in the background (llama.cpp cannot be stopped mid-decode) and the next call waits
for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from botkit.config.embedders import LlamaCppEmbedderConfig
from botkit.retrieval.embed_checks import embed_batches, unit_vectors
from botkit.retrieval.embedder import EmbedderError, Vectors
from botkit.retrieval.minilm_gguf import ConversionError, default_gguf, default_name

__all__ = ["LlamaCppEmbedder"]

T = TypeVar("T")


class LlamaCppEmbedder:
    """An embedding GGUF in this process."""

    def __init__(self, config: LlamaCppEmbedderConfig) -> None:
        self.config = config
        model = config.model or (config.model_path.name if config.model_path else default_name())
        self.name = f"llamacpp:{model}"
        self._llama: Any = None
        self._dims = 0
        self._max_tokens = 0
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def dimensions(self) -> int:
        """The model's embedding length (n_embd)."""
        self._started()
        return self._dims

    @property
    def max_tokens(self) -> int:
        """The model's trained context (n_ctx_train); a longer text is cut to it."""
        self._started()
        return self._max_tokens

    def _started(self) -> Any:
        if self._llama is None:
            raise EmbedderError(f"embedder {self.name} is not started")
        return self._llama

    async def _run(self, work: Callable[[], T]) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def _path(self) -> Path:
        spec = self.config.hub_model
        if spec is not None:
            from botkit.models.hub import ModelPullError, resolve
            from botkit.models.spec import ModelError

            try:
                return await asyncio.to_thread(resolve, spec)
            except (ModelPullError, ModelError) as exc:
                raise EmbedderError(f"embedder model {spec}: {exc}") from None
        if self.config.model_path is not None:
            return self.config.model_path
        try:
            return await asyncio.to_thread(default_gguf)
        except ConversionError as exc:
            raise EmbedderError(f"the default embedding model: {exc}") from None

    def _load(self, path: Path) -> Any:
        from llama_cpp import Llama

        if not path.is_file():
            raise EmbedderError(f"embedding model {path} does not exist")
        try:
            # n_ctx 0: the model's trained context, and batches of that size, so that any text
            # the model takes is read in one batch (an encoder sees the whole text at once).
            llama = Llama(
                str(path),
                embedding=True,
                n_ctx=0,
                n_batch=100_000,
                n_ubatch=100_000,
                n_threads=self.config.n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EmbedderError(
                f"llama.cpp cannot load {path.name} as an embedding model: {exc}"
            ) from None
        return llama

    async def start(self) -> None:
        """Load the model (converting the default on first use)."""
        if self._llama is not None:
            return
        path = await self._path()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embedder")
        llama = await self._run(lambda: self._load(path))
        self._dims = int(llama.n_embd())
        self._max_tokens = int(llama.n_batch)
        self._llama = llama

    def _embed_batch(self, texts: Sequence[str]) -> Vectors:
        llama = self._started()
        try:
            rows = llama.embed(list(texts), normalize=False, truncate=True)
        except Exception as exc:  # llama.cpp's decode failures come as several types
            raise EmbedderError(
                f"embedder {self.name} failed: {type(exc).__name__}: {exc}"
            ) from None
        return unit_vectors(rows, len(texts), self._dims, f"embedder {self.name}")

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per text, batch by batch on the worker thread."""
        self._started()
        return await embed_batches(texts, self.config.batch_size, self._dims, self._bounded)

    async def _bounded(self, batch: Sequence[str]) -> Vectors:
        """One batch on the worker thread, within the configured timeout."""
        try:
            async with asyncio.timeout(self.config.timeout):
                return await self._run(functools.partial(self._embed_batch, batch))
        except TimeoutError:
            raise EmbedderError(
                f"embedder {self.name} took longer than {self.config.timeout:g} s "
                f"for {len(batch)} texts"
            ) from None

    def count_tokens(self, text: str) -> int:
        """Tokens in text by the model's own tokenizer, with its [CLS] and [SEP]."""
        llama = self._started()
        return len(llama.tokenize(text.encode("utf-8", "replace"), add_bos=True))

    async def close(self) -> None:
        """Free the model once the worker thread is done with it."""
        llama, self._llama = self._llama, None
        if self._thread is not None:
            if llama is not None:
                await self._run(llama.close)
            self._thread.shutdown(wait=False)
            self._thread = None
