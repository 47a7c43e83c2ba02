"""The in-process llama.cpp backend (llama-cpp-python): loads a GGUF model and hands every
generation to one engine.

The engine (llama_batch.py) owns the only context that generates: `parallel` slots, one per
chat generated at once (`parallel = 1` is a one-slot engine), with the canonical prefill, the
settling of seeded replies, the per-chat state save and restore, and the sampler chains. The
`Llama` object here is the model and its tokenizer; its own context is kept tiny. Prompts are
tokenized by llama_prompt.py, /model's facts come from gguf_info.py, and the pieces reach the
event loop through llama_worker.Mailbox. Tool calls (llama_tools.py) are Hermes `<tool_call>`
blocks, constrained by a grammar built from the tools' schemas.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from botkit.backends.base import (
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Chunk,
    ContextOverflow,
    GenerationParams,
    LoraAdapter,
    Message,
    ModelNotFound,
)
from botkit.backends.gguf_info import describe_adapter, describe_model
from botkit.backends.llama_batch import BatchEngine, BatchJob
from botkit.backends.llama_lora import load_lora
from botkit.backends.llama_prompt import PromptTokenizer
from botkit.backends.llama_slots import llama_threads, slots_for
from botkit.backends.llama_tools import ToolReply, tool_format, tool_plan
from botkit.backends.llama_worker import Mailbox, receive
from botkit.backends.model_files import model_file
from botkit.backends.state_cache import StateCache, common_prefix
from botkit.config import LlamaCppConfig
from botkit.images.spec import Image
from botkit.machine import cpu_cores
from botkit.tools.spec import ToolChoice, ToolSpec

__all__ = ["LlamaCppBackend"]

log = logging.getLogger(__name__)

NO_INPROCESS_VISION = (
    "in-process vision is not available in this build: no vision GGUF with a projector "
    "could be installed to test it"
)

# The Llama object's own context is never used to generate (the engine has its own), so it
# holds only this many tokens of KV cache.
_TOKENIZER_CONTEXT = 64
_PROBE_KEY = "\0probe"  # the slot a /probs logits request uses (never a chat's key)


class LlamaCppBackend:
    """A GGUF model loaded in this process."""

    def __init__(self, name: str, config: LlamaCppConfig) -> None:
        self.name = name
        self.config = config
        self._engine: BatchEngine | None = None
        self._llm: Any = None
        self._cache = StateCache(config.state_cache_bytes)
        self._path: Path | None = None
        self._prompts: PromptTokenizer | None = None
        self._lora: LoraAdapter | None = None
        self._slots = 1  # chats generated at once, known once the model is loaded
        self._call_ids = itertools.count(1)  # ToolCall ids: call_1, call_2, … per process

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
        """The per-chat context state cache (for /context and benchmarks)."""
        return self._cache

    async def start(self) -> None:
        """Load the model and start the engine (off the event loop)."""
        if self._llm is not None:
            return
        path = await model_file(self.name, self.config)
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
        await asyncio.to_thread(self._load, path)

    def _load(self, path: Path) -> None:
        from llama_cpp import Llama

        cores = cpu_cores()
        threads, prompt_threads = llama_threads(self.config.n_threads, cores)
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=_TOKENIZER_CONTEXT,
                n_threads=threads,
                n_threads_batch=prompt_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"llama.cpp could not load {path.name}: {exc}") from exc
        try:
            self._prompts = PromptTokenizer(llm)
            adapter = None
            if self.config.lora_path is not None:
                # Loaded once, owned (and freed) by the model; the engine's context applies it.
                adapter = load_lora(llm._model.model, self.config.lora_path, path.name)
            self._slots = slots_for(self.name, self.config, llm.metadata, cores)
            self._engine = BatchEngine(
                llm,
                self._slots,
                self.config.n_ctx,
                min(self.config.n_batch, self.config.n_ctx),
                self._cache,
                lora=None if adapter is None else (adapter, self.config.lora_scale),
            )
        except ValueError as exc:
            llm.close()
            raise BackendUnavailable(f"{path.name}: {exc}") from exc
        except BackendUnavailable:
            llm.close()
            raise
        self._llm = llm

    @property
    def max_parallel(self) -> int:
        """Replies generated at once: the engine's slots."""
        return self._slots

    @property
    def ignored_settings(self) -> frozenset[str]:
        """None: llama.cpp applies every sampling setting."""
        return frozenset()

    @property
    def failure(self) -> str | None:
        """Why the engine stopped for good (Health); None while it runs."""
        return self._engine.failure if self._engine is not None else None

    async def close(self) -> None:
        """Stop the engine and free the model."""
        await asyncio.to_thread(self._unload)

    def _unload(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def _require(self) -> tuple[Any, BatchEngine, PromptTokenizer]:
        if self._llm is None or self._engine is None or self._prompts is None:
            raise BackendUnavailable(f"backend {self.name!r} is not started")
        return self._llm, self._engine, self._prompts

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length, with the model's own chat template and tokenizer."""
        return len(self._require()[2].prompt(messages))

    async def message_tokens(self, message: Message) -> int:
        """Tokens one message adds to a prompt (cached per role and content)."""
        return self._require()[2].message_tokens(message)

    async def tokenize(self, text: str) -> list[int]:
        """Plain tokenization of text, without any template (for /tokens)."""
        llm = self._require()[0]
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    async def token_pieces(self, token_ids: Sequence[int]) -> list[str]:
        """Each token's text (bytes that are not valid UTF-8 on their own are shown as �)."""
        llm = self._require()[0]
        return [llm.detokenize([t], special=True).decode("utf-8", "replace") for t in token_ids]

    async def next_token_logits(
        self, messages: Sequence[Message], continuation: str = ""
    ) -> npt.NDArray[np.float32]:
        """Raw logits for the next token, prefilled by the engine as a seeded reply is (so
        they are the ones a seeded reply would sample its first token from)."""
        prompt = self._require()[2].prompt(messages) + await self.tokenize(continuation)
        job, mailbox = self._job(prompt, GenerationParams(repeatable=True), _PROBE_KEY, True)
        async for _ in self._run(job, mailbox):
            pass
        logits: npt.NDArray[np.float32] | None = job.logits
        if logits is None:
            raise BackendUnavailable("llama.cpp returned no logits")
        return logits

    async def tool_support(self) -> str | None:
        """None when the model's own chat template renders tools and Hermes `<tool_call>`
        blocks (a model trained to call them, like Qwen2.5). Otherwise why not: botkit can
        render the tools for it, but a model never trained on them does not call them by
        itself (the bundled SmolLM2-135M made 0 correct calls in 20 prompts that needed one,
        bench/unforced_calls.py), and the declarations would cost every prompt their tokens.
        A forced call (/tool NAME) still works: the grammar makes it valid."""
        if self._require()[2].native_tools:
            return None
        return "its chat template has no tool calls, so it does not call tools by itself"

    async def vision_support(self) -> str | None:
        """Always why not: llama-cpp-python 0.3.36 has the libmtmd bindings (mtmd_cpp,
        MTMDChatHandler), but no vision GGUF with its projector could be installed here to
        test the path, so it is not offered (README, "Images")."""
        return NO_INPROCESS_VISION

    async def image_tokens(self, image: Image) -> int:
        """0: no image reaches this backend (vision_support says why)."""
        return 0

    async def tool_tokens(self, tools: Sequence[ToolSpec]) -> int:
        """Exact: the prompt with these declarations minus the prompt without them."""
        return self._require()[2].tool_tokens(tools)

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        """Stream a reply generated by the engine; closing the stream stops generation.

        With tools (tool_choice not "none"), call syntax never streams: a reply that calls
        ends with a chunk carrying the calls (stop_reason "tool_calls")."""
        if tool_choice == "none":
            tools = ()
        plan = tool_plan(tools, tool_choice)  # BackendError before anything runs
        if any(m.get("images") for m in messages):
            raise BackendError(f"images cannot be sent to this model: {NO_INPROCESS_VISION}")
        prompt = self._require()[2].prompt(messages, tools=tools)
        if len(prompt) + params.max_tokens > self.config.n_ctx:
            raise ContextOverflow(
                f"the prompt is {len(prompt)} tokens and the reply may take {params.max_tokens}, "
                f"but the context window holds {self.config.n_ctx}"
            )
        job, mailbox = self._job(prompt, params, cache_key)
        if plan is None:
            async for chunk in self._run(job, mailbox):
                yield chunk
            return
        job.grammar, job.watch = plan.grammar, plan.watch
        reply = ToolReply(self._call_ids, params.max_tokens)
        async for chunk in self._run(job, mailbox):
            for out in reply.feed(chunk):
                yield out

    @staticmethod
    def _job(
        prompt: list[int], params: GenerationParams, key: str, logits: bool = False
    ) -> tuple[BatchJob, Mailbox]:
        mailbox = Mailbox(asyncio.get_running_loop())
        job = BatchJob(prompt, params, key, threading.Event(), mailbox.put, logits_only=logits)
        return job, mailbox

    async def _run(self, job: BatchJob, mailbox: Mailbox) -> AsyncIterator[Chunk]:
        """Submit job and yield its pieces as they come, a batch at a time."""
        self._require()[1].submit(job)
        async for chunk in receive(mailbox, job.stop, self.config.stall_timeout, self.name):
            yield chunk

    async def cached_prefix(self, messages: Sequence[Message], cache_key: str) -> int:
        """Leading tokens of this conversation held in the chat's KV cache: in its slot, or in
        its saved state. Read without waiting for the engine, so a reply being generated may
        move it a little."""
        _, engine, prompts = self._require()
        prompt = prompts.prompt(messages, generation=False)
        held: list[Sequence[int]] = [engine.held(cache_key)]
        entry = self._cache.peek(cache_key)
        if entry is not None:
            held.append(entry.tokens)
        return max((common_prefix(tokens, prompt) for tokens in held), default=0)

    async def info(self) -> BackendInfo:
        """Model facts from the GGUF metadata and llama.cpp, and how it calls tools."""
        _, _, prompts = self._require()
        info = describe_model(
            self.name, self._require()[0], self._path, self.config.n_ctx, self._slots, self._lora
        )
        info.extra["tool calls"] = tool_format(prompts.native_tools)
        info.extra["vision"] = NO_INPROCESS_VISION
        return info
