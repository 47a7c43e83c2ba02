"""The in-process llama.cpp backend (llama-cpp-python), with per-chat KV state reuse.

llama.cpp contexts are not thread-safe, so every call that touches the context runs on one
dedicated worker thread; the event loop only receives finished text chunks (llama_worker.py).
Prompts are tokenized by llama_prompt.py, the state is saved and restored by kv_state.py and
kept in state_cache.py, and /model's facts come from gguf_info.py; this module generates.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from botkit.backends import kv_state
from botkit.backends.base import (
    BackendInfo,
    BackendUnavailable,
    BackendUnreachable,
    Chunk,
    ContextOverflow,
    GenerationParams,
    LoraAdapter,
    Message,
    ModelNotFound,
    Usage,
    generation_speed,
)
from botkit.backends.gguf_info import describe_adapter, describe_model, kv_bytes_per_token
from botkit.backends.llama_batch import BatchEngine, BatchJob
from botkit.backends.llama_lora import apply_lora, load_lora
from botkit.backends.llama_prompt import PromptTokenizer
from botkit.backends.llama_slots import choose_slots, llama_threads
from botkit.backends.llama_worker import Emit, Mailbox, log_failure
from botkit.backends.model_files import bundled_model_path
from botkit.backends.state_cache import CachedState, StateCache, common_prefix, reuse_point
from botkit.config import LlamaCppConfig
from botkit.machine import available_memory, cpu_cores

__all__ = ["LlamaCppBackend"]

log = logging.getLogger(__name__)

# Llama.generate's names for the sampling options where they differ from ours; the length and
# the seed are applied by the loop and set_seed.
_SAMPLER_NAMES = {"temperature": "temp"}
_NOT_SAMPLERS = frozenset({"max_tokens", "seed"})


class LlamaCppBackend:
    """A GGUF model loaded in this process."""

    def __init__(self, name: str, config: LlamaCppConfig) -> None:
        self.name = name
        self.config = config
        self._engine: BatchEngine | None = None
        self._llm: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        self._lock = threading.Lock()
        self._cache = StateCache(config.state_cache_bytes)
        self._path: Path | None = None
        self._prompts: PromptTokenizer | None = None
        self._eos: int = -1
        self._lora: LoraAdapter | None = None
        self._live_canonical = 0  # context tokens evaluated in the canonical batch shape
        self._live_key = ""  # the conversation whose tokens the single context holds
        self._slots = 1  # chats generated at once, known once the model is loaded

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
        path = await self._model_file()
        if not path.is_file():
            raise ModelNotFound(f"model file {path} does not exist")
        lora = self.config.lora_path
        if lora is not None:
            if not lora.is_file():
                raise BackendUnavailable(f"LoRA adapter file {lora} does not exist")
            try:
                self._lora = describe_adapter(lora, self.config.lora_scale)
            except (OSError, ValueError) as exc:
                raise BackendUnavailable(f"cannot use LoRA adapter {lora}: {exc}") from exc
        self._path = path
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load, path)

    async def _model_file(self) -> Path:
        """model_path, the Hub model (from the cache, or pulled once with progress), or the
        bundled model."""
        spec = self.config.hub_model
        if spec is None:
            return self.config.model_path or bundled_model_path()
        from botkit.models.hub import ModelPullError, resolve
        from botkit.models.progress import PullProgress
        from botkit.models.spec import ModelError

        progress = PullProgress()
        pulling = asyncio.ensure_future(asyncio.to_thread(resolve, spec, None, progress))
        try:
            return await asyncio.shield(pulling)
        except asyncio.CancelledError:
            # A stop while starting (SIGTERM during a first start's download): the thread ends
            # at its next block and huggingface_hub removes the partial file; wait for that.
            progress.message(f"stopping: {spec} is not ready; its pull ends at the next block")
            progress.stop()
            await asyncio.wait([pulling])
            if not pulling.cancelled():
                pulling.exception()  # PullStopped, expected: not "never retrieved"
            raise
        except ModelPullError as exc:
            where = f"backends.{self.name}: model {spec}: {exc}"
            raise (BackendUnreachable if exc.transient else ModelNotFound)(where) from None
        except ModelError as exc:
            raise ModelNotFound(f"backends.{self.name}: model {spec}: {exc}") from None

    def _load(self, path: Path) -> None:
        from llama_cpp import Llama

        cores = cpu_cores()
        threads, prompt_threads = llama_threads(self.config.n_threads, cores)
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=self.config.n_ctx,
                n_threads=threads,
                n_threads_batch=prompt_threads,
                n_batch=min(self.config.n_batch, self.config.n_ctx),
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"llama.cpp could not load {path.name}: {exc}") from exc
        try:
            self._prompts = PromptTokenizer(llm)
        except ValueError as exc:
            llm.close()
            raise BackendUnavailable(f"{path.name}: {exc}") from exc
        self._eos = llm.token_eos()
        adapter = None
        if self.config.lora_path is not None:
            # Loaded once, owned (and freed) by the model; every context gets it set.
            try:
                adapter = load_lora(llm._model.model, self.config.lora_path, path.name)
                apply_lora(llm._ctx.ctx, adapter, self.config.lora_scale)
            except BackendUnavailable:
                llm.close()
                raise
        self._slots = self._choose_slots(llm, cores)
        if self._slots > 1:
            self._engine = BatchEngine(
                llm,
                self._slots,
                self.config.n_ctx,
                min(self.config.n_batch, self.config.n_ctx),
                self._cache,
                lora=None if adapter is None else (adapter, self.config.lora_scale),
            )
        self._llm = llm

    def _choose_slots(self, llm: Any, cores: int | None) -> int:
        if self.config.parallel != "auto":
            return self.config.parallel
        slots = choose_slots(
            cores=cores,
            kv_bytes_per_token=kv_bytes_per_token(llm.metadata),
            n_ctx=self.config.n_ctx,
            n_batch=self.config.n_batch,
            available=available_memory(),
        )
        log.info("%s: parallel = auto chose %d slot(s)", self.name, slots)
        return slots

    @property
    def max_parallel(self) -> int:
        """Replies generated at once: the batched slots, or one."""
        return self._slots

    @property
    def ignored_settings(self) -> frozenset[str]:
        """None: llama.cpp applies every sampling setting."""
        return frozenset()

    @property
    def failure(self) -> str | None:
        """Why the batch loop stopped for good (Health); None while it runs."""
        return self._engine.failure if self._engine is not None else None

    async def close(self) -> None:
        """Free the model and stop the worker thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._unload)
        self._executor.shutdown(wait=True)

    def _unload(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
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
        self._require()
        assert self._prompts is not None
        return self._prompts.prompt(messages, generation=generation)

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length, with the model's own chat template and tokenizer."""
        return len(self._tokenize_prompt(messages))

    async def message_tokens(self, message: Message) -> int:
        """Tokens one message adds to a prompt (cached per role and content)."""
        self._require()
        assert self._prompts is not None
        return self._prompts.message_tokens(message)

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
            self._prefill(llm, prompt, "", exact=True)
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
        mailbox = Mailbox(loop)
        stop = threading.Event()
        future: asyncio.Future[None] | None = None
        if self._engine is not None:
            self._engine.submit(BatchJob(prompt, params, cache_key, stop, mailbox.put))
        else:
            job = functools.partial(
                self._sample, messages, prompt, params, cache_key, stop, mailbox.put,
                time.perf_counter(),
            )  # fmt: skip
            future = loop.run_in_executor(self._executor, self._guarded, job, mailbox.put)
        finished = False
        try:
            while not finished:
                text: list[str] = []
                usage: Usage | None = None
                error: BaseException | None = None
                for item in await self._take(mailbox):
                    if item is None:
                        finished = True  # seen even after an error: nothing is left to wait for
                    elif isinstance(item, BaseException):
                        error = error or item
                    else:
                        text.append(item.text)
                        usage = item.usage or usage
                if error is not None:
                    raise error
                if text or usage:
                    yield Chunk("".join(text), usage=usage)
        finally:
            if not finished:
                # Stopped early: wait until the worker has stopped generating, so this chat's
                # slot is not handed on while its tokens are still being decoded.
                stop.set()
                try:
                    await asyncio.shield(asyncio.wait_for(self._ended(mailbox), self._stall))
                except TimeoutError:
                    log.error("%s: a stopped reply did not end within %.0f s", self.name,
                              self._stall)  # fmt: skip
            # The state save after a finished reply goes on without us: the worker thread runs
            # one job at a time, so the next turn waits for it, this reply does not.
            if future is not None:
                future.add_done_callback(log_failure)

    @property
    def _stall(self) -> float:
        return self.config.stall_timeout

    async def _take(self, mailbox: Mailbox) -> list[Chunk | BaseException | None]:
        """The worker's next pieces, waited for at most stall_timeout: a step that never
        returns must not hold the reply (and its chat) for ever."""
        try:
            return await asyncio.wait_for(mailbox.take_all(), self._stall)
        except TimeoutError:
            raise BackendUnavailable(
                f"llama.cpp produced nothing for {self._stall:.0f} s (stall_timeout); the reply "
                "was stopped"
            ) from None

    @staticmethod
    async def _ended(mailbox: Mailbox) -> None:
        while None not in await mailbox.take_all():
            pass

    def _guarded(self, job: Callable[[], None], emit: Emit) -> None:
        """Run a generation job holding the context lock; always end the stream.

        A job ends its stream itself (None) as soon as the reply is complete and may go on
        with bookkeeping (the state save); an error after that only reaches the log.
        """
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
        messages: Sequence[Message],
        prompt: list[int],
        params: GenerationParams,
        cache_key: str,
        stop: threading.Event,
        emit: Emit,
        submitted: float,
    ) -> None:
        llm = self._require()
        started = time.perf_counter()
        reused, restored = self._prefill(llm, prompt, cache_key, exact=params.repeatable)
        prefilled = time.perf_counter()
        first: float | None = None
        is_eog = llama_cpp.llama_vocab_is_eog
        vocab = llm._model.vocab
        llm.set_seed(params.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        completion: list[int] = []
        reason: str = "length"
        # The prompt is fully evaluated, so generate() samples from the live logits at once.
        sampler = params.sampling(_SAMPLER_NAMES, without=_NOT_SAMPLERS)
        for token in llm.generate(prompt, **sampler, reset=True):
            if stop.is_set():
                reason = "cancelled"
                break
            if token == self._eos or is_eog(vocab, token):
                reason = "stop"
                break
            completion.append(token)
            if first is None:
                first = time.perf_counter()
            piece = decoder.decode(llm.detokenize([token], special=False))
            if piece:
                emit(Chunk(piece))
            if len(completion) >= params.max_tokens or llm.n_tokens >= self.config.n_ctx:
                reason = "length"
                break
        tail = decoder.decode(b"", final=True)
        usage = Usage(
            prompt_tokens=len(prompt),
            completion_tokens=len(completion),
            stop_reason=reason,  # type: ignore[arg-type]
            cached_prompt_tokens=reused,
            prefill_seconds=prefilled - started,
            first_token_seconds=None if first is None else first - submitted,
            tokens_per_second=generation_speed(len(completion), first, time.perf_counter()),
            state_restored=restored,
        )
        emit(Chunk(tail, usage=usage))
        emit(None)  # the reply is complete: the user has it before any bookkeeping below
        if params.repeatable and reason != "cancelled":
            text = llm.detokenize(completion, special=False).decode("utf-8", "replace")
            self._settle(llm, [*messages, {"role": "assistant", "content": text}])
        self._save_state(llm, cache_key)

    def _prefill(
        self, llm: Any, prompt: list[int], cache_key: str, *, exact: bool
    ) -> tuple[int, bool]:
        """Evaluate the prompt, reusing the longest evaluated prefix; returns the tokens reused
        and whether the chat's saved state was loaded for it.

        llama.cpp computes a one-token batch with a different kernel than a larger batch, so
        the same history evaluated in different batch shapes gives slightly different logits:
        keeping a reply's tokens (decoded one at a time) in the context changed 22 of 24
        seeded follow-ups on the bundled model. A prompt is therefore always evaluated the
        same way (all tokens but the last in batches of two or more, then the last alone), and
        the context remembers how much of it was evaluated that way ("canonical"). An exact
        (seeded) reply reuses only that part, so it is the same warm or cold; any other reply
        reuses everything evaluated, reply tokens included, as llama.cpp's server does.
        """
        evaluated = llm.input_ids[: llm.n_tokens]
        bound = self._live_canonical if exact else llm.n_tokens
        live = min(bound, common_prefix(evaluated, prompt))
        canonical = self._live_canonical
        restored = False
        entry = self._cache.get(cache_key)
        if entry is not None:
            bound = entry.canonical if exact else len(entry.tokens)
            saved = min(bound, common_prefix(entry.tokens, prompt))
            if saved > live:
                self._restore_state(llm, entry)
                live, canonical, restored = saved, entry.canonical, True
        reuse = reuse_point(live, len(prompt))
        llm.n_tokens = reuse
        self._eval_batched(llm, prompt[reuse:-1])
        llm.eval(prompt[-1:])
        self._live_canonical = len(prompt) - 1 if reuse <= canonical else canonical
        self._live_key = cache_key
        return reuse, restored

    def _eval_batched(self, llm: Any, tokens: Sequence[int]) -> None:
        """Evaluate tokens in batches of at least two (the canonical shape)."""
        step = max(2, self.config.n_batch)
        start = 0
        while start < len(tokens):
            end = min(len(tokens), start + step)
            if len(tokens) - end == 1:
                end -= 1  # keep the final piece at two tokens or more
            llm.eval(tokens[start:end])
            start = end

    def _settle(self, llm: Any, conversation: Sequence[Message]) -> None:
        """Re-evaluate a finished exact reply in the canonical shape, after it was delivered.

        The next prompt starts with this conversation (the reply closed by the template), so
        the next seeded turn reuses it and evaluates only the new message: the cost of exact
        repeatability moves off the next reply's time to first token while the chat is idle.
        """
        framed = self._tokenize_prompt(conversation, generation=False)
        common = common_prefix(llm.input_ids[: llm.n_tokens], framed)
        reuse = min(self._live_canonical, common, len(framed) - 2)
        if reuse < 0:
            return
        llm.n_tokens = reuse
        self._eval_batched(llm, framed[reuse:])
        self._live_canonical = len(framed)

    def _save_state(self, llm: Any, cache_key: str) -> None:
        """Keep the chat's context state for its next turn (after its reply has been sent)."""
        if self._cache.capacity_bytes == 0 or llm.n_tokens == 0:
            return
        blob = kv_state.snapshot(llm._ctx.ctx)
        tokens = tuple(llm.input_ids[: llm.n_tokens].tolist())
        entry = CachedState(tokens, blob, len(blob), canonical=self._live_canonical)
        self._cache.put(cache_key, entry)

    def _restore_state(self, llm: Any, entry: CachedState) -> None:
        kv_state.restore(llm._ctx.ctx, entry.state)
        llm.input_ids[: len(entry.tokens)] = entry.tokens
        llm.n_tokens = len(entry.tokens)
        llm._requires_eval = True  # as Llama.load_state: no live logits until the next eval

    async def cached_prefix(self, messages: Sequence[Message], cache_key: str) -> int:
        """Leading tokens of this conversation held in the chat's KV cache: in the live
        context (or its batch slot), or in its saved state. Read without waiting for the
        worker, so a reply being generated may move it a little."""
        llm = self._require()
        prompt = self._tokenize_prompt(messages, generation=False)
        held: list[Sequence[int]] = []
        if self._engine is not None:
            held.append(self._engine.held(cache_key))
        elif self._live_key == cache_key:
            held.append(llm.input_ids[: llm.n_tokens].tolist())
        entry = self._cache.peek(cache_key)
        if entry is not None:
            held.append(entry.tokens)
        return max((common_prefix(tokens, prompt) for tokens in held), default=0)

    # --- description --------------------------------------------------------------------

    async def info(self) -> BackendInfo:
        """Model facts from the GGUF metadata and llama.cpp."""
        return describe_model(
            self.name, self._require(), self._path, self.config.n_ctx, self._slots, self._lora
        )
