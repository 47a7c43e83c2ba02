"""The llama.cpp engine: one context generating for one or several chats at once.

A context with `n_seq_max = slots` holds one sequence per slot, each with the full `n_ctx`,
in its own KV cells (not unified: attention for one chat covers only its cells). One worker
thread loops: every step it takes one token from each generating chat and a chunk of each new
prompt (up to n_batch tokens in all), decodes them, and samples each chat's next token with
its own sampler chain (settings and seed). A chat that arrives takes a free slot at once and
is prefilled alongside the others. `parallel = 1` is the same engine with one slot.

A slot keeps its chat's tokens after the reply, so the chat's next turn reuses the prefix;
when another chat takes the slot, the leaving chat's sequence state goes to the state cache
(llama_state_seq_*, one buffer) and comes back when that chat returns. A seeded
(repeatable) chat reuses only what was evaluated as prompt, in chunks of two or more, never
generated tokens; its reply is evaluated again that way right after it ends (a settle job).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals

from botkit.backends import kv_state
from botkit.backends.base import (
    BackendError,
    BackendUnavailable,
    Chunk,
    Usage,
    generation_speed,
)
from botkit.backends.llama_jobs import BatchJob, Slot, arm, discard, switch
from botkit.backends.llama_lora import apply_lora
from botkit.backends.state_cache import CachedState, StateCache, common_prefix, reuse_point

__all__ = ["BatchEngine", "BatchJob"]

log = logging.getLogger(__name__)

# llama-cpp-python's thin wrappers (context, batch, sampler chain) are untyped.
internals: Any = _internals

_CLOSE_SECONDS = 30.0  # how long close() waits for a step in progress


class BatchEngine:
    """Owns a batched context over a loaded model; submit() jobs from any thread."""

    def __init__(
        self,
        llm: Any,
        slots: int,
        n_ctx: int,
        n_batch: int,
        cache: StateCache,
        *,
        lora: tuple[Any, float] | None = None,
    ) -> None:
        """lora: a LoRA adapter loaded on llm's model, with its scale, to apply here too."""
        # The Llama object's context settings (threads for generating and for prompts, flash
        # attention off, KV types): llama.cpp's defaults (flash attention "auto", one thread
        # count for both) made long chats 40 % slower here.
        params = llama_cpp.llama_context_default_params()
        for name, _ in params._fields_:
            setattr(params, name, getattr(llm.context_params, name))
        params.n_ctx = n_ctx * slots
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = slots
        params.kv_unified = False
        self._llm = llm
        self._ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
        if lora is not None:
            apply_lora(self._ctx.ctx, *lora)
        self._batch = internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self._memory = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._n_ctx = n_ctx
        self._n_batch = n_batch
        self._vocab = llm._model.vocab
        self._n_vocab = llm.n_vocab()
        self._eos = llm.token_eos()
        self._slots = [Slot() for _ in range(slots)]
        self._cache = cache  # chats' sequence states, for chats whose slot was taken
        self._waiting: queue.SimpleQueue[BatchJob | None] = queue.SimpleQueue()
        self._clock = 0
        # Set once the loop has died; submit() then refuses at once (under _gate, so no job
        # can be queued after the dying loop emptied the queue).
        self.failure: str | None = None
        self._gate = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self._thread.start()

    def submit(self, job: BatchJob) -> None:
        """Queue a job; it joins the running batch at the next step with a free slot. Raises
        BackendUnavailable if the engine has stopped after an internal error."""
        with self._gate:
            if self.failure is not None:
                raise BackendUnavailable(self.failure)
            self._waiting.put(job)

    def close(self) -> None:
        """Stop the loop (jobs in flight are ended) and free the context. A loop stuck in a
        step is left behind (a daemon thread) rather than waited for without end; its context
        is then not freed, since the step still uses it."""
        self._waiting.put(None)
        self._thread.join(_CLOSE_SECONDS)
        if self._thread.is_alive():
            log.error("the llama.cpp batch loop did not stop within %.0f s", _CLOSE_SECONDS)
            return
        self._batch.close()
        self._ctx.close()

    def held(self, key: str) -> list[int]:
        """The tokens a slot holds for chat key (empty if none); read from another thread for
        a report, so it may be a step behind."""
        for slot in self._slots:
            if slot.key == key:
                return list(slot.tokens)
        return []

    # --- the loop (worker thread) ---------------------------------------------------------

    def _run(self) -> None:
        backlog: list[BatchJob] = []
        try:
            self._loop(backlog)
        except BaseException as exc:
            # Anything that escapes a step leaves the slots' tokens and the KV cache in doubt:
            # every job is ended with an error, later ones are refused, and the service's
            # watchdog stops, so systemd restarts the process with a fresh context.
            log.critical("the llama.cpp batch loop stopped", exc_info=exc)
            reason = f"the llama.cpp engine stopped after an internal error ({exc!r}); the bot "
            reason += "must be restarted (under systemd it restarts by itself)"
            with self._gate:
                self.failure = reason
            jobs = [s.job for s in self._slots if s.job is not None] + backlog
            while True:
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    jobs.append(item)
            for job in jobs:
                self._abort(job, BackendUnavailable(reason))

    def _loop(self, backlog: list[BatchJob]) -> None:
        while True:
            active = [s.job for s in self._slots if s.job is not None]
            try:
                item = self._waiting.get(block=not active and not backlog)
            except queue.Empty:
                pass  # nothing new: decode the next step
            else:
                if item is None:
                    for job in [*active, *backlog]:
                        self._finish(job, "cancelled")
                    return
                backlog.append(item)
                continue  # take everything already queued before the next step
            backlog[:] = self._admit(backlog)
            self._step()

    @staticmethod
    def _abort(job: BatchJob, error: BaseException) -> None:
        """End a job's stream with an error (emit never raises to here: see Mailbox.put)."""
        job.emit(error)
        job.emit(None)

    def _admit(self, backlog: list[BatchJob]) -> list[BatchJob]:
        """Give waiting jobs free slots (the chat's own slot first, else the least recent)."""
        left = []
        for job in backlog:
            if job.stop.is_set():
                job.emit(None)
                continue
            free = [i for i, s in enumerate(self._slots) if s.job is None]
            settling = any(
                s.key == job.cache_key and s.job is not None and s.job.settle for s in self._slots
            )
            if not free or settling:  # the chat's own slot is settling: a step, then it is free
                left.append(job)
                continue
            self._start(self._choose(free, job), job)
        return left

    def _choose(self, free: list[int], job: BatchJob) -> int:
        """The chat's own slot; else, as llama-server does, a slot that already holds at least
        half of the prompt (the same persona and question in another chat), the longest such
        prefix first; else the least recently used (an empty one first)."""
        own = [i for i in free if self._slots[i].key == job.cache_key]
        if own:
            return own[0]
        shared = {i: common_prefix(self._slots[i].tokens, job.prompt) for i in free}
        best = max(free, key=lambda i: (shared[i], -self._slots[i].used))
        if shared[best] * 2 >= len(job.prompt):
            return best
        return min(free, key=lambda i: self._slots[i].used)

    def _start(self, index: int, job: BatchJob) -> None:
        error = None if job.settle or job.logits_only else arm(job, self._llm._model)
        if error is not None:  # e.g. a grammar llama.cpp refused: this reply alone fails
            self._abort(job, error)
            return
        slot = self._slots[index]
        job.started = time.perf_counter()
        if slot.key != job.cache_key:
            job.restored = self._swap(index, slot, job)
        bound = slot.canonical if job.params.repeatable else len(slot.tokens)
        reuse = reuse_point(common_prefix(slot.tokens[:bound], job.prompt), len(job.prompt))
        job.canonical = reuse <= slot.canonical
        llama_cpp.llama_memory_seq_rm(self._memory, index, reuse, -1)
        slot.tokens = slot.tokens[:reuse]
        slot.canonical = min(slot.canonical, reuse)
        self._clock += 1
        slot.key, slot.job, slot.used = job.cache_key, job, self._clock
        job.slot, job.fed, job.reused = index, reuse, reuse

    def _swap(self, index: int, slot: Slot, job: BatchJob) -> bool:
        """Another chat takes this slot: keep the leaving chat's sequence state, and bring
        back the arriving chat's if it was kept and shares more of its prompt (True then)."""
        if slot.key is not None and slot.tokens and self._cache.capacity_bytes:
            blob = kv_state.snapshot_sequence(self._ctx.ctx, index)
            entry = CachedState(tuple(slot.tokens), blob, len(blob), canonical=slot.canonical)
            self._cache.put(slot.key, entry)
        saved = self._cache.get(job.cache_key)
        if saved is None:
            return False
        bound = saved.canonical if job.params.repeatable else len(saved.tokens)
        if common_prefix(saved.tokens[:bound], job.prompt) <= common_prefix(
            slot.tokens, job.prompt
        ):
            return False
        llama_cpp.llama_memory_seq_rm(self._memory, index, -1, -1)
        kv_state.restore_sequence(self._ctx.ctx, saved.state, index)
        slot.tokens, slot.canonical = list(saved.tokens), saved.canonical
        return True

    def _step(self) -> None:
        """One step: a token for each generating job, a prompt chunk for each new one; the
        chats with a random seed share one decode, each seeded chat has one of its own.

        llama.cpp's logits for a row depend on the batch it is computed in (how many rows,
        how many of them give logits: 31.2577 for the same token beside 31 other rows, 31.2540
        beside 3), so a near tie can fall either way beside other chats. A seeded chat
        promises the same reply for the same history, so its rows are always decoded as if
        it were alone: the same as with parallel = 1, whatever else is generating."""
        jobs = [s.job for s in self._slots if s.job is not None]
        for job in jobs:
            if job.stop.is_set():
                self._finish(job, "cancelled")
        jobs = [job for job in jobs if self._slots[job.slot].job is job]
        shared = [job for job in jobs if not job.params.repeatable]
        groups = ([shared] if shared else []) + [[j] for j in jobs if j.params.repeatable]
        for group in groups:
            self._decode(group)

    def _decode(self, jobs: list[BatchJob]) -> None:
        """One llama_decode for these jobs, then their next tokens."""
        batch = self._batch.batch
        count = 0
        outputs: list[tuple[BatchJob, int]] = []
        # Tokens enter a slot's record only once they are decoded: the record must say what
        # the sequence's KV cells hold, or every later turn of the chat fails.
        added: dict[int, list[int]] = {job.slot: [] for job in jobs}

        def add(job: BatchJob, token: int, logits: bool) -> None:
            nonlocal count
            slot = self._slots[job.slot]
            batch.token[count] = token
            batch.pos[count] = len(slot.tokens) + len(added[job.slot])
            batch.seq_id[count][0] = job.slot
            batch.n_seq_id[count] = 1
            batch.logits[count] = logits
            if logits:
                outputs.append((job, count))
            added[job.slot].append(token)
            count += 1

        generating = [j for j in jobs if j.pending is not None]
        for job in generating:
            assert job.pending is not None
            add(job, job.pending, True)
            job.pending = None
        prefilling = [j for j in jobs if j.fed < len(j.prompt)]
        room = self._n_batch - count
        for n, job in enumerate(prefilling):
            share = max(2, room // (len(prefilling) - n)) if room >= 2 else 0
            rest = len(job.prompt) - job.fed
            if rest == 1:
                take = 1 if room >= 1 else 0  # the final prompt token, in a step of its own
            else:
                take = min(share, rest - 1)  # all but the final token, two or more at a time
                if rest - 1 - take == 1:
                    take = take - 1 if take > 2 else take + 1
                take = min(take, room)
            for token in job.prompt[job.fed : job.fed + take]:
                add(job, token, False)
            job.fed += take
            room -= take
            if job.fed == len(job.prompt):
                batch.logits[count - 1] = True
                outputs.append((job, count - 1))
        if count == 0:
            return
        batch.n_tokens = count
        try:
            self._ctx.decode(self._batch)
        except Exception as exc:  # the jobs in this step end; the engine goes on
            self._failed_step(jobs, exc)
            return
        for index, tokens in added.items():
            self._slots[index].tokens.extend(tokens)
        now = time.perf_counter()
        for job, _ in outputs:
            if not job.completion and job.prefilled is None:
                job.prefilled = now
                if job.canonical:
                    # The prompt but its final token, which was evaluated alone: a one-token
                    # batch rounds differently, so a seeded chat that reused it would differ
                    # from one that evaluated that position inside a chunk.
                    self._slots[job.slot].canonical = len(job.prompt) - 1
        for job, index in outputs:
            if job.logits_only:
                row = llama_cpp.llama_get_logits_ith(self._ctx.ctx, index)
                job.logits = np.ctypeslib.as_array(row, shape=(self._n_vocab,)).astype(
                    np.float32, copy=True
                )
            if job.settle or job.logits_only:
                self._finish(job, "stop")
            else:
                self._sample(job, index)

    def _failed_step(self, jobs: list[BatchJob], exc: Exception) -> None:
        """A decode failed (llama_decode returned non-zero: no room in the KV cache, a compute
        error): what its sequences hold is unknown, so they are emptied and the jobs in the
        step end with an error; the other slots and later turns are unaffected."""
        log.error("batched decode failed: %s", exc)
        error = BackendError(f"llama.cpp failed while generating ({exc}); send it again")
        for job in jobs:
            slot = self._slots[job.slot]
            llama_cpp.llama_memory_seq_rm(self._memory, job.slot, -1, -1)
            slot.tokens, slot.canonical, slot.key = [], 0, None
            job.emit(error)
            job.completion.clear()  # nothing of it is settled: the reply was cut
            self._finish(job, "cancelled")

    def _sample(self, job: BatchJob, index: int) -> None:
        token = job.sampler.sample(self._ctx, index)  # also accepts it into the chain
        if token == self._eos or llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(job, "stop")
            return
        job.completion.append(token)
        if job.first is None:
            job.first = time.perf_counter()
        piece = job.decoder.decode(self._llm.detokenize([token], special=False))
        if piece:
            job.emit(Chunk(piece))
            if job.watch is not None and (grammar := job.watch.seen(piece)) is not None:
                switch(job, self._llm._model, grammar)  # the reply has started a tool call
        slot = self._slots[job.slot]
        if len(job.completion) >= job.params.max_tokens or len(slot.tokens) + 1 >= self._n_ctx:
            self._finish(job, "length")
            return
        job.pending = token

    def _finish(self, job: BatchJob, reason: str) -> None:
        tail = job.decoder.decode(b"", final=True) if job.decoder is not None else ""
        usage = Usage(
            prompt_tokens=len(job.prompt),
            completion_tokens=len(job.completion),
            stop_reason=reason,  # type: ignore[arg-type]
            cached_prompt_tokens=job.reused,
            prefill_seconds=None if job.prefilled is None else job.prefilled - job.started,
            first_token_seconds=None if job.first is None else job.first - job.submitted,
            tokens_per_second=generation_speed(len(job.completion), job.first, time.perf_counter()),
            state_restored=job.restored,
        )
        job.emit(Chunk(tail, usage=usage))
        job.emit(None)
        if job.sampler is not None:
            job.sampler.close()
            job.sampler = None
        if 0 <= job.slot < len(self._slots) and self._slots[job.slot].job is job:
            self._slots[job.slot].job = None
            if job.params.repeatable and reason != "cancelled" and job.completion:
                self._settle(job)

    def _settle(self, job: BatchJob) -> None:
        """A seeded reply's tokens were decoded one at a time, not as a cold prompt holding them
        is evaluated: evaluate them again in prompt-sized chunks right after the reply, so the
        chat's next turn reuses them and its reply is the same as from a cold start."""
        tokens = job.prompt + job.completion  # _start re-evaluates what is not canonical
        settle = BatchJob(tokens, job.params, job.cache_key, threading.Event(), discard,
                          settle=True)  # fmt: skip
        self._start(job.slot, settle)
