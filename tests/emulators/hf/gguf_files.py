"""Small GGUF files for the Hub emulator's fake repos: a valid header (GGUF v3, the metadata
given, no tensors) padded with zeros to a chosen size, like a quantization of the bundled model
that only botkit's header reader and memory sums need to see."""

from __future__ import annotations

import struct

from botkit.backends.gguf_file import GGUF_MAGIC

__all__ = ["gguf_bytes", "smollm_metadata"]


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_bytes(metadata: dict[str, int | str], size: int) -> bytes:
    """A GGUF v3 file of exactly `size` bytes: ints are written as u32, strings as strings."""
    body = GGUF_MAGIC + struct.pack("<IQQ", 3, 0, len(metadata))
    for key, value in metadata.items():
        if isinstance(value, str):
            body += _string(key) + struct.pack("<I", 8) + _string(value)
        else:
            body += _string(key) + struct.pack("<II", 4, value)
    if len(body) > size:
        raise ValueError(f"a {size}-byte GGUF cannot hold this header ({len(body)} bytes)")
    return body + bytes(size - len(body))


def smollm_metadata(file_type: int, **extra: int | str) -> dict[str, int | str]:
    """The bundled SmolLM2-135M's architecture keys (what the KV size is computed from)."""
    return {
        "general.architecture": "llama",
        "general.name": "SmolLM2 135M",
        "general.file_type": file_type,
        "llama.context_length": 8192,
        "llama.embedding_length": 576,
        "llama.block_count": 30,
        "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3,
        **extra,
    }
