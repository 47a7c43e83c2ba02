"""Reading a GGUF file's header without loading the model: metadata and tensor sizes.

`botkit models` checks downloads and lists models with this: llama.cpp would map the whole file
and build a context just to tell the parameter count. The layout (ggml's docs/gguf.md): magic
"GGUF", version (2 or 3), tensor count, metadata count (u64 each), then the metadata key/value
pairs, then one record per tensor (name, dimensions, type, offset). Arrays (the tokenizer's
vocabulary) are skipped, not kept.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["GGUF_MAGIC", "GgufError", "GgufHeader", "TensorInfo", "read_gguf_header"]

GGUF_MAGIC = b"GGUF"
_VERSIONS = (2, 3)  # version 1 (2023) used 32-bit counts; llama.cpp no longer loads it

# gguf_type: scalar struct formats (little-endian), 8 = string, 9 = array.
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
    12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_MAX_STRING = 1 << 24  # a longer key or value is a damaged file, not a chat template


class GgufError(ValueError):
    """The file is not a readable GGUF file; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor record: name, dimensions, ggml type, offset in the data section."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int


@dataclass(frozen=True, slots=True)
class GgufHeader:
    """What a GGUF header tells: its metadata (scalars as text, like llama.cpp's) and tensors."""

    version: int
    metadata: dict[str, str]
    tensor_count: int
    parameters: int  # elements of all tensors in this file
    tensors: tuple[TensorInfo, ...] = ()
    # Byte offsets: where the key/value pairs start and end (for tools that copy them), and
    # where the tensor data starts (after the records, aligned to general.alignment).
    metadata_span: tuple[int, int] = (0, 0)
    data_offset: int = 0

    @property
    def architecture(self) -> str:
        """general.architecture ("llama", "qwen2", …), or "" when missing."""
        return self.metadata.get("general.architecture", "")

    @property
    def split_count(self) -> int:
        """How many files the model is split into (1 for a whole model)."""
        return int(self.metadata.get("split.count", "1"))


class _Reader:
    def __init__(self, file: BinaryIO, name: str) -> None:
        self._file = file
        self._name = name

    def take(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        data = self._file.read(size)
        if len(data) != size:
            raise GgufError(f"{self._name}: the GGUF header ends early (truncated file?)")
        value: int | float | bool = struct.unpack(fmt, data)[0]
        return value

    def count(self) -> int:
        return int(self.take("<Q"))

    def string(self) -> str:
        length = self.count()
        if length > _MAX_STRING:
            raise GgufError(f"{self._name}: a {length}-byte string in the GGUF header")
        data = self._file.read(length)
        if len(data) != length:
            raise GgufError(f"{self._name}: the GGUF header ends early (truncated file?)")
        return data.decode("utf-8", errors="replace")

    def value(self, kind: int) -> str | None:
        """A scalar or string as text; arrays are skipped (None)."""
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind = int(self.take("<I"))
            items = self.count()
            if item_kind in _SCALARS:
                self._file.seek(items * struct.calcsize(_SCALARS[item_kind]), 1)
            else:
                for _ in range(items):
                    self.value(item_kind)
            return None
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise GgufError(f"{self._name}: unknown GGUF value type {kind}")
        value = self.take(fmt)
        return str(value).lower() if isinstance(value, bool) else str(value)


def read_gguf_header(path: Path) -> GgufHeader:
    """The header of the GGUF file at path; GgufError says why it is not one."""
    with path.open("rb") as file:
        if file.read(4) != GGUF_MAGIC:
            raise GgufError(f"{path.name} is not a GGUF file (it does not start with 'GGUF')")
        reader = _Reader(file, path.name)
        version = int(reader.take("<I"))
        if version not in _VERSIONS:
            raise GgufError(f"{path.name}: GGUF version {version} is not supported (2 or 3 is)")
        tensor_count, kv_count = reader.count(), reader.count()
        kv_start = file.tell()
        metadata: dict[str, str] = {}
        for _ in range(kv_count):
            key = reader.string()
            value = reader.value(int(reader.take("<I")))
            if value is not None:
                metadata[key] = value
        kv_end = file.tell()
        tensors = []
        for _ in range(tensor_count):
            name = reader.string()
            dims = tuple(reader.count() for _ in range(int(reader.take("<I"))))
            ggml_type, offset = int(reader.take("<I")), int(reader.take("<Q"))
            tensors.append(TensorInfo(name, dims, ggml_type, offset))
        alignment = int(metadata.get("general.alignment", "32"))
        data_offset = -(-file.tell() // alignment) * alignment
    parameters = sum(math.prod(t.dims) for t in tensors)
    return GgufHeader(
        version, metadata, tensor_count, parameters, tuple(tensors), (kv_start, kv_end), data_offset
    )
