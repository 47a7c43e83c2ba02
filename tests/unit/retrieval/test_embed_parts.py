"""The embedders' pure parts: checking returned vectors, batching, the token estimate, the
[embedder] config, and reading model.zip and a converted file (no model is loaded)."""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from botkit.config.embedders import (
    EmbedderConfig,
    LlamaCppEmbedderConfig,
    OllamaEmbedderConfig,
)
from botkit.retrieval import minilm_gguf
from botkit.retrieval.embed_checks import batches, estimate_tokens, unit_vectors
from botkit.retrieval.embedder import EmbedderError
from botkit.retrieval.minilm_gguf import ConversionError, cached_problem, read_source, source_zip

# --- vectors ----------------------------------------------------------------------------------


def test_vectors_are_normalised_float32() -> None:
    out = unit_vectors([[3.0, 4.0], [0.0, 2.0]], 2, 2, "server")
    assert out.dtype == np.float32
    assert np.allclose(out, [[0.6, 0.8], [0.0, 1.0]])
    assert unit_vectors([], 0, 384, "server").shape == (0, 384)


@pytest.mark.parametrize(
    ("rows", "count", "dims", "message"),
    [
        ({"embeddings": 1}, 1, None, "returned no list of vectors"),
        ("garbage", 1, None, "returned no list of vectors"),
        ([[1.0]], 2, None, "returned 1 vectors for 2 texts"),
        ([[1.0], []], 2, None, "returned an empty vector"),
        ([[1.0, 2.0], [1.0]], 2, None, "vectors of 1 numbers where 2 were expected"),
        ([[1.0, 2.0]], 1, 3, "vectors of 2 numbers where 3 were expected"),
        ([[1.0, math.nan]], 1, 2, "NaN or infinite"),
        ([[1.0, math.inf]], 1, 2, "NaN or infinite"),
        ([[0.0, 0.0]], 1, 2, "all-zero vector"),
        ([["a", "b"]], 1, 2, "not a list of numbers"),
        ([5], 1, None, "not a list of numbers"),
    ],
)
def test_wrong_vectors_are_refused(rows: Any, count: int, dims: int | None, message: str) -> None:
    with pytest.raises(EmbedderError, match=message):
        unit_vectors(rows, count, dims, "the server")


def test_batches_and_the_estimate() -> None:
    assert [list(b) for b in batches(["a", "b", "c"], 2)] == [["a", "b"], ["c"]]
    assert list(batches([], 2)) == []
    english = "The quick brown fox jumps over the lazy dog."  # 12 BERT tokens with [CLS] [SEP]
    assert estimate_tokens(english) >= 12
    assert estimate_tokens("日本語") >= 5  # one token a character, plus [CLS] and [SEP]
    assert estimate_tokens("") == 2


# --- config -----------------------------------------------------------------------------------

_ADAPTER: TypeAdapter[Any] = TypeAdapter(EmbedderConfig)


def test_the_config_defaults_to_the_bundled_model_in_process() -> None:
    config = _ADAPTER.validate_python({})
    assert isinstance(config, LlamaCppEmbedderConfig)
    assert (config.model, config.model_path, config.batch_size) == (None, None, 32)
    ollama = _ADAPTER.validate_python({"kind": "ollama", "model": "nomic-embed-text"})
    assert isinstance(ollama, OllamaEmbedderConfig)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": "a/b:Q8_0", "model_path": "x.gguf"}, "not both"),
        ({"kind": "ollama"}, "model"),
        ({"kind": "openai", "model": "m", "base_url": "ftp://x"}, "base_url"),
        ({"kind": "openai", "model": "m", "base_url": "http://x/v1", "api_key": "sk-1"}, "api_key"),
        ({"timeout": 0}, "timeout"),
        ({"kind": "vector-db"}, "vector-db"),
    ],
)
def test_bad_config_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _ADAPTER.validate_python(data)


# --- model.zip ----------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _safetensors(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


_CONFIG = json.dumps({"model_type": "bert"}).encode()


def test_a_truncated_model_zip_is_refused_clearly(tmp_path: Path) -> None:
    real, _ = source_zip()
    cut = tmp_path / "model.zip"
    with real.open("rb") as file:
        cut.write_bytes(file.read(1 << 20))  # a download or copy that stopped at 1 MB
    with pytest.raises(ConversionError, match=r"model\.zip is not a readable zip"):
        read_source(cut)


def test_a_damaged_member_is_refused(tmp_path: Path) -> None:
    good = _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    path = _zip(
        tmp_path / "m.zip",
        {"config.json": _CONFIG, "tokenizer.json": b"{}", "model.safetensors": good},
    )
    assert read_source(path).tensors["w"].shape == (2,)
    raw = bytearray(path.read_bytes())
    at = raw.index(good) + len(good) - 1
    raw[at] ^= 0xFF  # one flipped byte in the weights: the CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(ConversionError, match=r"not a readable zip: Bad CRC-32"):
        read_source(path)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"config.json": _CONFIG}, r"tokenizer\.json is not in the zip"),
        ({"config.json": b"{not json", "tokenizer.json": b"{}"}, r"config\.json is not JSON"),
        ({"config.json": b"[1]", "tokenizer.json": b"{}"}, r"config\.json is not a JSON object"),
        (
            {"config.json": _CONFIG, "tokenizer.json": b"{}", "model.safetensors": b"\x01"},
            r"too short for a safetensors file",
        ),
        (
            {
                "config.json": _CONFIG,
                "tokenizer.json": b"{}",
                "model.safetensors": struct.pack("<Q", 1 << 40) + b"{}",
            },
            r"the header claims",
        ),
        (
            {
                "config.json": _CONFIG,
                "tokenizer.json": b"{}",
                "model.safetensors": _safetensors(
                    {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)
                ),
            },
            r"tensor w \[4\] lies outside the file",
        ),
        (
            {
                "config.json": _CONFIG,
                "tokenizer.json": b"{}",
                "model.safetensors": _safetensors(
                    {"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)
                ),
            },
            r"tensor w: a dtype \(F32, F16, I64\)",
        ),
        (
            {
                "config.json": b'{"model_type": "llama"}',
                "tokenizer.json": b"{}",
                "model.safetensors": _safetensors({}, b""),
            },
            r"describes a 'llama' model, not BERT",
        ),
    ],
)
def test_a_malformed_model_zip_says_what_is_wrong(
    tmp_path: Path, members: dict[str, bytes], message: str
) -> None:
    with pytest.raises(ConversionError, match=message):
        read_source(_zip(tmp_path / "model.zip", members))


def test_a_zip_member_too_big_to_unpack_is_not_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(minilm_gguf, "_MAX_MEMBER", 1 << 20)  # 512 MB in use: slow to build
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", _CONFIG)
        zf.writestr("tokenizer.json", b"{}")
        zf.writestr("model.safetensors", bytes(3 << 20))  # deflates to 3 KB
    (tmp_path / "bomb.zip").write_bytes(buffer.getvalue())
    with pytest.raises(ConversionError, match=r"would unpack to 3145728 bytes \(at most 1048576\)"):
        read_source(tmp_path / "bomb.zip")


# --- a converted file -------------------------------------------------------------------------


def test_a_truncated_converted_file_is_found(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "small.gguf"
    writer = gguf.GGUFWriter(path, "bert")
    writer.add_tensor("a", np.ones((64, 64), np.float16))
    writer.add_tensor("b", np.ones(64, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert cached_problem(path) is None
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(size - 200)
    assert "a truncated file" in (cached_problem(path) or "")
    with path.open("r+b") as file:
        file.truncate(20)
    assert cached_problem(path) is not None
    assert "cannot be read" in (cached_problem(tmp_path / "none.gguf") or "")
