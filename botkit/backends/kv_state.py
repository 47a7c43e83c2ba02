"""Saving and restoring a llama.cpp context's state (its KV cache) without extra copies.

A chat's state is its KV cache: about 22 KiB per token for SmolLM2-135M, 66 MB for a
3,000-token chat, and gigabytes for an 8B model at 8k. llama-cpp-python's own `save_state`
builds `bytes(buffer[:n])`, and slicing a ctypes array makes a Python list of ints first
(seconds, with the GIL held, and several times the state in memory); its `load_state` copies
the blob again and writes its logits scratch. Here llama.cpp writes straight into one
preallocated bytearray, and reads straight from it on restore: one copy of the state, made
and read by llama.cpp with the GIL released.
"""

from __future__ import annotations

import ctypes
from typing import Any

from llama_cpp import llama_cpp as c

__all__ = ["restore", "restore_sequence", "snapshot", "snapshot_sequence"]


def snapshot(ctx: Any) -> bytearray:
    """The whole state of llama.cpp context ctx (a `llama_context_p`), in one buffer."""
    size = int(c.llama_state_get_size(ctx))
    blob = bytearray(size)
    view = (ctypes.c_uint8 * size).from_buffer(blob)
    written = int(c.llama_state_get_data(ctx, view, size))
    del view  # the buffer export must end before the bytearray may shrink
    if written < size:
        del blob[written:]  # in place: no second copy
    return blob


def restore(ctx: Any, blob: bytearray) -> None:
    """Load a state taken by snapshot() back into ctx (the blob is read, not copied)."""
    size = len(blob)
    view = (ctypes.c_uint8 * size).from_buffer(blob)
    if int(c.llama_state_set_data(ctx, view, size)) != size:
        raise RuntimeError("llama.cpp refused the saved state")


def snapshot_sequence(ctx: Any, seq_id: int) -> bytearray:
    """One sequence's state (a chat in a batched context), in one buffer, as snapshot()."""
    size = int(c.llama_state_seq_get_size(ctx, seq_id))
    blob = bytearray(size)
    view = (ctypes.c_uint8 * size).from_buffer(blob)
    written = int(c.llama_state_seq_get_data(ctx, view, size, seq_id))
    del view
    if written < size:
        del blob[written:]
    return blob


def restore_sequence(ctx: Any, blob: bytearray, seq_id: int) -> None:
    """Load a sequence state taken by snapshot_sequence() into sequence seq_id of ctx."""
    size = len(blob)
    view = (ctypes.c_uint8 * size).from_buffer(blob)
    if int(c.llama_state_seq_set_data(ctx, view, size, seq_id)) == 0:
        raise RuntimeError("llama.cpp refused the saved sequence state")
