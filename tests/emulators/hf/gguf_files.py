"""GGUF files for the Hub emulator's repos: small ones (a valid GGUF v3 header with the metadata
given, no tensors, padded with zeros to a chosen size: a quantization of the bundled model that
only botkit's header reader and memory sums need to see), and the bundled model split into
shards as llama.cpp's gguf-split writes them (llama.cpp loads those)."""

from __future__ import annotations

import struct
from pathlib import Path

from botkit.backends.gguf_file import GGUF_MAGIC, read_gguf_header

__all__ = ["gguf_bytes", "smollm_metadata", "split_gguf"]

_ALIGN = 32  # GGUF's default alignment (the bundled model sets no general.alignment)


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


def _split_keys(number: int, count: int, tensors: int) -> bytes:
    # gguf-split's keys (llama.cpp tools/gguf-split): split.no and split.count as u16,
    # split.tensors.count as i32; llama.cpp's loader checks their types.
    return (
        _string("split.no") + struct.pack("<IH", 2, number)
        + _string("split.count") + struct.pack("<IH", 2, count)
        + _string("split.tensors.count") + struct.pack("<Ii", 5, tensors)
    )  # fmt: skip


def split_gguf(source: Path, count: int) -> list[bytes]:
    """The model at source as `count` gguf-split shards llama.cpp loads: the first keeps every
    key, each holds its share of the tensors (records and data, 32-byte aligned)."""
    header = read_gguf_header(source)
    data = source.read_bytes()
    kv_count = struct.unpack_from("<Q", data, 16)[0]
    keys = data[header.metadata_span[0] : header.metadata_span[1]]
    ordered = sorted(header.tensors, key=lambda t: t.offset)
    ends = [t.offset for t in ordered[1:]] + [len(data) - header.data_offset]
    blobs = {t.name: data[header.data_offset + t.offset : header.data_offset + end]
             for t, end in zip(ordered, ends, strict=True)}  # fmt: skip
    share = -(-len(ordered) // count)
    shards = []
    for number in range(count):
        mine = ordered[number * share : (number + 1) * share]
        records, body = b"", b""
        for tensor in mine:
            records += _string(tensor.name) + struct.pack("<I", len(tensor.dims))
            records += struct.pack(f"<{len(tensor.dims)}Q", *tensor.dims)
            records += struct.pack("<IQ", tensor.ggml_type, len(body))
            body += blobs[tensor.name] + bytes(-len(blobs[tensor.name]) % _ALIGN)
        own_keys = (keys if number == 0 else b"") + _split_keys(number, count, len(ordered))
        n_keys = (kv_count if number == 0 else 0) + 3
        head = GGUF_MAGIC + struct.pack("<IQQ", 3, len(mine), n_keys) + own_keys + records
        shards.append(head + bytes(-len(head) % _ALIGN) + body)
    return shards
