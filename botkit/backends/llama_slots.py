"""What the llama.cpp backend takes of this machine: how many chats it generates at once when
`parallel = "auto"`, and how many threads it computes with.

Continuous batching pays where one step's weight reads serve many chats: on the 2-core
development machine 8 chats at once gave 1.77× the tokens/s of one at a time, and 1 chat lost
nothing (bench/batching.py). What limits it is memory, since every slot holds a full n_ctx of
KV cache, and the batch, which must hold a token of every generating chat.
"""

from __future__ import annotations

import logging
from typing import Any

from botkit.backends.gguf_info import kv_bytes_per_token
from botkit.config import LlamaCppConfig
from botkit.machine import available_memory

__all__ = ["AUTO_SLOTS", "choose_slots", "llama_threads", "slots_for"]

log = logging.getLogger(__name__)

AUTO_SLOTS = 8  # beyond 8 a CPU gains little more, and memory grows with every slot
_KV_SHARE = 4  # all slots' KV may take at most a quarter of the memory free at start


def choose_slots(
    *, cores: int | None, kv_bytes_per_token: int | None, n_ctx: int, n_batch: int,
    available: int | None,
) -> int:  # fmt: skip
    """Slots for "auto": one on a single core (a second chat's prefill would stall the first
    for no gain); else up to AUTO_SLOTS, as many as fit in a quarter of the free memory with a
    full window each, and as the batch holds (two tokens per slot, see LlamaCppConfig)."""
    if not cores or cores < 2 or not kv_bytes_per_token or not available:
        return 1
    by_memory = available // _KV_SHARE // (kv_bytes_per_token * n_ctx)
    by_batch = min(n_batch, n_ctx) // 2
    return max(1, min(AUTO_SLOTS, by_memory, by_batch))


def llama_threads(configured: int | None, cores: int | None) -> tuple[int, int]:
    """Threads for generating and for reading prompts. A configured figure is used for both,
    so a process that shares the machine stays within its cores in both phases. Otherwise
    llama-cpp-python's defaults (half the cores to generate, all to read prompts), counted
    from the cores this process may use rather than the machine's: llama.cpp's threads
    spin-wait at each step, and more of them than cores made two processes on 2 cores 20×
    slower (tests/integration/test_scaleout.py, 0.3 s a turn became 6 s)."""
    if configured is not None:
        return configured, configured
    cores = max(1, cores or 1)
    return max(1, cores // 2), cores


def slots_for(backend: str, config: LlamaCppConfig, metadata: Any, cores: int | None) -> int:
    """The configured `parallel`, or for "auto" what choose_slots picks for this model (from
    its GGUF metadata) on this machine; the log says which."""
    if config.parallel != "auto":
        return config.parallel
    slots = choose_slots(
        cores=cores,
        kv_bytes_per_token=kv_bytes_per_token(metadata),
        n_ctx=config.n_ctx,
        n_batch=config.n_batch,
        available=available_memory(),
    )
    log.info("%s: parallel = auto chose %d slot(s)", backend, slots)
    return slots
