"""The in-process llama.cpp backend (llama-cpp-python), with per-chat KV state reuse.

llama.cpp contexts are not thread-safe, so every call that touches the context runs on one
dedicated worker thread; the event loop only receives finished text chunks.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import functools
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from botkit.backends.base import (
    BackendInfo,
    BackendUnavailable,
    Chunk,
    ContextOverflow,
    GenerationParams,
    Message,
    ModelNotFound,
    Usage,
)
from botkit.backends.model_files import bundled_model_path
from botkit.backends.state_cache import CachedState, StateCache
from botkit.config import LlamaCppConfig

__all__ = ["LlamaCppBackend", "quantization_name"]

log = logging.getLogger(__name__)

# llama.cpp's `general.file_type` values (enum llama_ftype) for the common formats.
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}  # fmt: skip

_Emit = Callable[[Chunk | BaseException | None], None]


def quantization_name(file_type: str | None) -> str | None:
    """Human name of a GGUF `general.file_type` value (e.g. "3" → "Q4_1")."""
    if file_type is None:
        return None
    try:
        return _FILE_TYPES.get(int(file_type), f"type {file_type}")
    except ValueError:
        return file_type


class _Mailbox:
    """Hands items from the worker thread to the event loop, waking the loop once per batch.

    One wake-up per token would make the loop compete with the generating thread for the GIL
    on every token; batching keeps the reply stream's overhead off the model's speed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Chunk | BaseException | None] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._ready = asyncio.Event()

    def put(self, item: Chunk | BaseException | None) -> None:
        """Called from the worker thread."""
        with self._lock:
            self._items.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._ready.set)

    async def take_all(self) -> list[Chunk | BaseException | None]:
        """Everything put since the last call (waits for at least one item)."""
        await self._ready.wait()
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._scheduled = False
            self._ready.clear()
        return items


class LlamaCppBackend:
    """A GGUF model loaded in this process."""

    max_parallel = 1

    def __init__(self, name: str, config: LlamaCppConfig) -> None:
        self.name = name
        self.config = config
        self._llm: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        self._lock = threading.Lock()
        self._cache = StateCache(config.state_cache_bytes)
        self._path: Path | None = None
        self._formatter: Any = None
        self._framing: Any = None
        self._eos: int = -1
        self._message_cache: dict[tuple[str, str], int] = {}
        self._prompt_cache: dict[tuple[object, ...], list[int]] = {}
        self._live_canonical = 0  # context tokens evaluated in the canonical batch shape

    @property
    def context_window(self) -> int:
        """The loaded context length (n_ctx)."""
        return self.config.n_ctx

    @property
    def tokenizer_id(self) -> str:
        """The model file name: counts from another file are recounted."""
        return f"llamacpp:{self._path.name if self._path else '?'}"

    @property
    def state_cache(self) -> StateCache:
        """The per-chat context state cache (exposed for /context and benchmarks)."""
        return self._cache

    async def start(self) -> None:
        """Load the model on the worker thread."""
        if self._llm is not None:
            return
        path = self.config.model_path or bundled_model_path()
        if not path.is_file():
            raise ModelNotFound(f"model file {path} does not exist")
        self._path = path
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load, path)

    def _load(self, path: Path) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=self.config.n_ctx,
                n_threads=self.config.n_threads,
                n_batch=min(self.config.n_batch, self.config.n_ctx),
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"llama.cpp could not load {path.name}: {exc}") from exc
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendUnavailable(f"{path.name} has no chat template in its GGUF metadata")
        eos = llm.token_eos()
        bos = llm.token_bos()
        eos_text = llm.detokenize([eos], special=True).decode("utf-8", "replace")
        bos_text = (
            llm.detokenize([bos], special=True).decode("utf-8", "replace") if bos >= 0 else ""
        )
        self._formatter = Jinja2ChatFormatter(
            template, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=True
        )
        self._framing = Jinja2ChatFormatter(
            template, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=False
        )
        self._eos = eos
        self._llm = llm

    async def close(self) -> None:
        """Free the model and stop the worker thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._unload)
        self._executor.shutdown(wait=True)

    def _unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def _require(self) -> Any:
        if self._llm is None:
            raise BackendUnavailable(f"backend {self.name!r} is not started")
        return self._llm

    # --- tokens -------------------------------------------------------------------------

    def _tokenize_prompt(
        self, messages: Sequence[Message], *, generation: bool = True
    ) -> list[int]:
        if len(messages) <= 2:  # the persona and anchor prompts recur on every turn
            key = (generation, *((m["role"], m["content"]) for m in messages))
            cached = self._prompt_cache.get(key)
            if cached is None:
                cached = self._prompt_cache[key] = self._render_tokens(messages, generation)
                if len(self._prompt_cache) > 1024:
                    self._prompt_cache.pop(next(iter(self._prompt_cache)))
            return list(cached)
        return self._render_tokens(messages, generation)

    def _render_tokens(self, messages: Sequence[Message], generation: bool) -> list[int]:
        llm = self._require()
        formatter = self._formatter if generation else self._framing
        result = formatter(messages=list(messages))
        # The same rule as llama-cpp-python's own chat handler: a BOS only if the template
        # did not write one, so our counts match what create_chat_completion would send.
        tokens: list[int] = llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        return tokens

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length, with the model's own chat template and tokenizer."""
        return len(self._tokenize_prompt(messages))

    async def message_tokens(self, message: Message) -> int:
        """Tokens one message adds: rendered after a fixed system message, minus that message.

        Cached per (role, content): stored messages are counted once, personas once per turn.
        """
        key = (message["role"], message["content"])
        count = self._message_cache.get(key)
        if count is None:
            anchor: Message = {"role": "system", "content": "."}
            framed = self._tokenize_prompt([anchor, message], generation=False)
            count = len(framed) - len(self._tokenize_prompt([anchor], generation=False))
            if len(self._message_cache) >= 4096:
                self._message_cache.clear()
            self._message_cache[key] = count
        return count

    async def tokenize(self, text: str) -> list[int]:
        """Plain tokenization of text, without any template (for /tokens)."""
        tokens: list[int] = self._require().tokenize(
            text.encode("utf-8"), add_bos=False, special=False
        )
        return tokens

    async def token_pieces(self, token_ids: Sequence[int]) -> list[str]:
        """Each token's text (bytes that are not valid UTF-8 on their own are shown as �)."""
        llm = self._require()
        return [llm.detokenize([t], special=True).decode("utf-8", "replace") for t in token_ids]

    async def next_token_logits(
        self, messages: Sequence[Message], continuation: str = ""
    ) -> npt.NDArray[np.float32]:
        """Raw logits for the next token, from the same context and prefill as a reply."""
        prompt = self._tokenize_prompt(messages) + await self.tokenize(continuation)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._logits, prompt)

    def _logits(self, prompt: list[int]) -> npt.NDArray[np.float32]:
        with self._lock:
            llm = self._require()
            self._prefill(llm, prompt, "")
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            result: npt.NDArray[np.float32] = logits.astype(np.float32, copy=True)
            return result

    # --- generation ---------------------------------------------------------------------

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams, *, cache_key: str
    ) -> AsyncIterator[Chunk]:
        """Stream a reply generated on the worker thread; closing the stream stops generation."""
        self._require()
        prompt = self._tokenize_prompt(messages)
        if len(prompt) + params.max_tokens > self.config.n_ctx:
            raise ContextOverflow(
                f"the prompt is {len(prompt)} tokens and the reply may take {params.max_tokens}, "
                f"but the context window holds {self.config.n_ctx}"
            )
        loop = asyncio.get_running_loop()
        mailbox = _Mailbox(loop)
        stop = threading.Event()
        job = functools.partial(self._sample, prompt, params, cache_key, stop, mailbox.put)
        future = loop.run_in_executor(self._executor, self._guarded, job, mailbox.put)
        try:
            finished = False
            while not finished:
                text: list[str] = []
                usage: Usage | None = None
                for item in await mailbox.take_all():
                    if item is None:
                        finished = True
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        text.append(item.text)
                        usage = item.usage or usage
                if text:
                    yield Chunk("".join(text), usage=usage)
        finally:
            stop.set()
            # Wait for the worker so the context is consistent before anyone else uses it.
            await asyncio.shield(future)

    def _guarded(self, job: Callable[[], None], emit: _Emit) -> None:
        """Run a generation job holding the context lock; always end the stream."""
        try:
            with self._lock:
                job()
        except Exception as exc:
            log.exception("generation failed on backend %s", self.name)
            emit(BackendUnavailable(f"llama.cpp failed while generating: {exc}"))
        finally:
            emit(None)

    def _sample(
        self,
        prompt: list[int],
        params: GenerationParams,
        cache_key: str,
        stop: threading.Event,
        emit: _Emit,
    ) -> None:
        llm = self._require()
        reused = self._prefill(llm, prompt, cache_key)
        is_eog = llama_cpp.llama_vocab_is_eog
        vocab = llm._model.vocab
        llm.set_seed(params.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        completion: list[int] = []
        reason: str = "length"
        # The prompt is fully evaluated, so generate() samples from the live logits at once.
        for token in llm.generate(
            prompt,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
            reset=True,
        ):
            if stop.is_set():
                reason = "cancelled"
                break
            if token == self._eos or is_eog(vocab, token):
                reason = "stop"
                break
            completion.append(token)
            piece = decoder.decode(llm.detokenize([token], special=False))
            if piece:
                emit(Chunk(piece))
            if len(completion) >= params.max_tokens or llm.n_tokens >= self.config.n_ctx:
                reason = "length"
                break
        tail = decoder.decode(b"", final=True)
        self._save_state(llm, cache_key)
        usage = Usage(
            prompt_tokens=len(prompt),
            completion_tokens=len(completion),
            stop_reason=reason,  # type: ignore[arg-type]
            cached_prompt_tokens=reused,
        )
        emit(Chunk(tail, usage=usage))

    def _prefill(self, llm: Any, prompt: list[int], cache_key: str) -> int:
        """Evaluate the prompt, reusing the longest evaluated prefix; returns tokens reused.

        llama.cpp computes a one-token batch with a different kernel than a larger batch, so
        the same history evaluated in different batch shapes gives slightly different logits
        and a seeded reply would depend on what the cache happened to hold. Every prompt is
        therefore evaluated the same way, warm or cold: all tokens but the last in batches of
        two or more, then the last one alone. Only that canonical part of the context (never
        the reply tokens, which were decoded one at a time) is ever reused.
        """
        live = min(self._live_canonical, self._common_prefix(llm.input_ids[: llm.n_tokens], prompt))
        entry = self._cache.get(cache_key)
        if entry is not None:
            saved = self._common_prefix(entry.tokens, prompt)
            if saved > live:
                llm.load_state(entry.state)
                live = saved
        reuse = min(live, len(prompt) - 1)
        if len(prompt) - 1 - reuse == 1:
            reuse -= 1  # never leave a one-token batch in the middle
        llm.n_tokens = reuse
        body = prompt[reuse:-1]
        step = max(2, self.config.n_batch)
        start = 0
        while start < len(body):
            end = min(len(body), start + step)
            if len(body) - end == 1:
                end -= 1  # keep the final piece at two tokens or more
            llm.eval(body[start:end])
            start = end
        llm.eval(prompt[-1:])
        self._live_canonical = len(prompt) - 1
        return reuse

    @staticmethod
    def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        return n

    def _save_state(self, llm: Any, cache_key: str) -> None:
        if self._cache.capacity_bytes == 0 or self._live_canonical == 0:
            return
        from llama_cpp import llama_cpp as c
        from llama_cpp.llama import LlamaState

        ctx = llm._ctx.ctx
        size = c.llama_state_get_size(ctx)
        buffer = (ctypes.c_uint8 * int(size))()
        written = int(c.llama_state_get_data(ctx, buffer, size))
        # Llama.save_state also copies the logits scratch (n_batch × vocab floats, ~100 MB
        # here); a restore always re-evaluates at least the last prompt token, so one row of
        # zeros is enough and keeps each saved chat at the size of its KV cache.
        state = LlamaState(
            input_ids=llm.input_ids.copy(),
            scores=np.zeros((1, llm.scores.shape[1]), dtype=np.single),
            n_tokens=llm.n_tokens,
            llama_state=bytes(buffer[:written]),
            llama_state_size=written,
            seed=llm._seed,
        )
        tokens = tuple(llm.input_ids[: self._live_canonical].tolist())
        self._cache.put(cache_key, CachedState(tokens=tokens, state=state, size=written))

    # --- description --------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        """Model facts from the GGUF metadata and llama.cpp."""
        llm = self._require()
        meta: dict[str, str] = llm.metadata
        arch = meta.get("general.architecture", "")
        trained = meta.get(f"{arch}.context_length")
        kv_per_token = None
        try:
            layers = int(meta[f"{arch}.block_count"])
            kv_heads = int(
                meta.get(f"{arch}.attention.head_count_kv") or meta[f"{arch}.attention.head_count"]
            )
            head_dim = int(meta[f"{arch}.embedding_length"]) // int(
                meta[f"{arch}.attention.head_count"]
            )
            kv_per_token = 2 * layers * kv_heads * head_dim * 2  # K and V, f16 (llama.cpp default)
        except (KeyError, ValueError, ZeroDivisionError):
            pass
        return BackendInfo(
            backend=self.name,
            kind="llama.cpp",
            # The file name is what people recognise ("SmolLM2-135M-Instruct.Q4_1");
            # general.name is often a training-run label.
            model_name=self._path.stem if self._path else meta.get("general.name", "?"),
            parameters=int(llm._model.n_params()),
            quantization=quantization_name(meta.get("general.file_type")),
            context_length=self.config.n_ctx,
            trained_context_length=int(trained) if trained else None,
            file_size=self._path.stat().st_size if self._path else None,
            kv_bytes_per_token=kv_per_token,
            extra={
                "architecture": arch,
                "size label": meta.get("general.size_label", "?"),
                "GGUF name": meta.get("general.name", "?"),
                "file": self._path.name if self._path else "?",
            },
        )
