"""Reading a GGUF file's header without loading the model: metadata and tensor sizes.

`botkit models` checks downloads and lists models with this: llama.cpp would map the whole file
and build a context just to tell the parameter count. The layout (ggml's docs/gguf.md): magic
"GGUF", version (2 or 3), tensor count, metadata count (u64 each), then the metadata key/value
pairs, then one record per tensor (name, dimensions, type, offset). Arrays (the tokenizer's
vocabulary) are skipped, not kept.

Any file can be handed to it (a damaged download, a file someone named .gguf), so every field
is checked before it is used, by ggml's own rules (ggml/src/gguf.cpp, gguf_init_from_file_impl:
no arrays of arrays, at most GGML_MAX_DIMS = 4 dimensions of at most INT64_MAX elements in
all, a power-of-two u32 `general.alignment`), and every count against the bytes the file has
left: whatever the bytes say, reading ends in milliseconds with a GgufError naming the field.

gguf-py's `GGUFReader` (llama.cpp's own, a dev dependency here) is not used: it is not
installed with botkit, it maps the whole file and builds numpy views of every field (2 s of CPU
for the 98 MB bundled model, against 0.06 s here), and on such files it fails the same ways
(RecursionError on nested arrays, KeyError on a huge count).
"""

from __future__ import annotations

import math
import os
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
_UINT32, _STRING, _ARRAY = 4, 8, 9
_MAX_STRING = 1 << 24  # a longer key or value is a damaged file, not a chat template
_MAX_DIMS = 4  # GGML_MAX_DIMS (ggml.h)
_INT64_MAX = (1 << 63) - 1
_ALIGNMENT_KEY, _DEFAULT_ALIGNMENT = "general.alignment", 32
# The fewest bytes one item can take, to bound a count by what the file has left: a key/value
# pair (key length, type, a one-byte value), a tensor record (name length, dimension count,
# type, offset), a string (its length).
_MIN_PAIR, _MIN_TENSOR, _MIN_STRING = 8 + 4 + 1, 8 + 4 + 4 + 8, 8


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
        count = self.metadata.get("split.count", "1")
        return int(count) if count.isdigit() else 1


class _Reader:
    def __init__(self, file: BinaryIO, name: str, size: int) -> None:
        self._file = file
        self._name = name
        self._size = size

    def fail(self, problem: str) -> GgufError:
        return GgufError(f"{self._name}: {problem}")

    def left(self) -> int:
        return self._size - self._file.tell()

    def take(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        data = self._file.read(size)
        if len(data) != size:
            raise self.fail("the GGUF header ends early (truncated file?)")
        value: int | float | bool = struct.unpack(fmt, data)[0]
        return value

    def count(self, what: str, least_bytes: int) -> int:
        """A u64 count of items that take at least least_bytes each."""
        count = int(self.take("<Q"))
        if count * least_bytes > self.left():
            raise self.fail(
                f"the header claims {count} {what}, more than the {self._size}-byte file "
                "holds (a truncated or damaged file)"
            )
        return count

    def string(self) -> str:
        length = self.count("bytes of a string", 1)
        if length > _MAX_STRING:
            raise self.fail(f"a {length}-byte string in the GGUF header")
        return self._file.read(length).decode("utf-8", errors="replace")

    def value(self, kind: int) -> str | None:
        """A scalar or string as text; arrays are skipped (None)."""
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind = int(self.take("<I"))
            if item_kind == _ARRAY:
                # gguf.cpp refuses them too ("has invalid GGUF type"): llama.cpp loads none.
                raise self.fail("an array of arrays in the metadata (GGUF allows none)")
            fmt = _SCALARS.get(item_kind)
            if item_kind == _STRING:
                for _ in range(self.count("array items", _MIN_STRING)):
                    self.string()
            elif fmt is None:
                raise self.fail(f"unknown GGUF value type {item_kind} in an array")
            else:
                items = self.count("array items", struct.calcsize(fmt))
                self._file.seek(items * struct.calcsize(fmt), os.SEEK_CUR)
            return None
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise self.fail(f"unknown GGUF value type {kind}")
        value = self.take(fmt)
        return str(value).lower() if isinstance(value, bool) else str(value)

    def tensor(self) -> TensorInfo:
        name = self.string()
        n_dims = int(self.take("<I"))
        if n_dims > _MAX_DIMS:
            raise self.fail(f"tensor {name!r} has {n_dims} dimensions (ggml allows {_MAX_DIMS})")
        dims = tuple(int(self.take("<Q")) for _ in range(n_dims))
        if any(d > _INT64_MAX for d in dims) or math.prod(dims) > _INT64_MAX:
            raise self.fail(f"tensor {name!r} has an impossible shape {list(dims)}")
        return TensorInfo(name, dims, int(self.take("<I")), int(self.take("<Q")))


def _alignment(reader: _Reader, kinds: dict[str, int], metadata: dict[str, str]) -> int:
    kind = kinds.get(_ALIGNMENT_KEY)
    if kind is None:
        return _DEFAULT_ALIGNMENT
    value = metadata.get(_ALIGNMENT_KEY, "an array")
    alignment = int(value) if kind == _UINT32 else 0
    if alignment <= 0 or alignment & (alignment - 1):
        # gguf.cpp reads it as a u32 and refuses one that is not a power of two.
        raise reader.fail(
            f"general.alignment must be a u32 power of two; it is {value!r} (GGUF type {kind})"
        )
    return alignment


def read_gguf_header(path: Path) -> GgufHeader:
    """The header of the GGUF file at path; GgufError says why it is not one (OSError when it
    cannot be read at all)."""
    with path.open("rb") as file:
        if file.read(4) != GGUF_MAGIC:
            raise GgufError(f"{path.name} is not a GGUF file (it does not start with 'GGUF')")
        reader = _Reader(file, path.name, os.fstat(file.fileno()).st_size)
        version = int(reader.take("<I"))
        if version not in _VERSIONS:
            raise GgufError(f"{path.name}: GGUF version {version} is not supported (2 or 3 is)")
        tensor_count = int(reader.take("<Q"))
        kv_count = reader.count("metadata keys", _MIN_PAIR)
        kv_start = file.tell()
        metadata: dict[str, str] = {}
        kinds: dict[str, int] = {}
        for _ in range(kv_count):
            key = reader.string()
            kinds[key] = int(reader.take("<I"))
            value = reader.value(kinds[key])
            if value is not None:
                metadata[key] = value
        kv_end = file.tell()
        if tensor_count * _MIN_TENSOR > reader.left():
            raise reader.fail(
                f"the header claims {tensor_count} tensors, more than the file's "
                f"{reader.left()} bytes after the metadata hold (a truncated or damaged file)"
            )
        tensors = tuple(reader.tensor() for _ in range(tensor_count))
        alignment = _alignment(reader, kinds, metadata)
        data_offset = -(-file.tell() // alignment) * alignment
    parameters = sum(math.prod(t.dims) for t in tensors)
    return GgufHeader(
        version, metadata, tensor_count, parameters, tensors, (kv_start, kv_end), data_offset
    )
