"""Model names, GGUF file grouping and choice, the GGUF header reader, and the config key."""

from __future__ import annotations

import re
import struct
import time
from pathlib import Path

import pytest

from botkit.backends.gguf_file import GGUF_MAGIC, GgufError, read_gguf_header
from botkit.config import ConfigError, load_config
from botkit.models.files import AmbiguousModel, ModelChoiceError, RepoFile, choose, group_models
from botkit.models.hub import find_local
from botkit.models.local import remove
from botkit.models.spec import ModelError, ModelSpec, parse_model_spec
from tests.emulators.hf.gguf_files import gguf_bytes, smollm_metadata


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M",
         ModelSpec("bartowski/Qwen2.5-1.5B-Instruct-GGUF", quant="Q4_K_M")),
        ("unsloth/gpt-oss-20b-GGUF", ModelSpec("unsloth/gpt-oss-20b-GGUF")),
        ("hf://owner/repo/sub/Model-Q8_0-00001-of-00002.gguf",
         ModelSpec("owner/repo", filename="sub/Model-Q8_0-00001-of-00002.gguf")),
    ],
)  # fmt: skip
def test_the_two_forms_parse_and_print_back(text: str, spec: ModelSpec) -> None:
    assert parse_model_spec(text) == spec
    assert str(spec) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("llama3.2", "does not name a Hub repository; use OWNER/REPO, OWNER/REPO:QUANT"),
        ("a--b/c", "does not name a Hub repository"),
        ("owner/repo:Q4 K", "the quantization after ':' is a name such as Q4_K_M"),
        ("hf://owner/repo/model.bin", "hf:// needs the path of a .gguf file"),
        ("hf://owner/repo/../x.gguf", "hf:// needs the path of a .gguf file"),
        ("o/" + "r" * 500, "at most 400 characters"),
    ],
)
def test_bad_names_say_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_model_spec(text)


def files(*names_sizes: tuple[str, int]) -> list[RepoFile]:
    return [RepoFile(name, size) for name, size in names_sizes]


def test_split_parts_are_one_model_and_projectors_are_left_out() -> None:
    models = group_models(
        files(
            ("Q8_0/M-Q8_0-00002-of-00002.gguf", 2),
            ("Q8_0/M-Q8_0-00001-of-00002.gguf", 3),
            ("M-Q4_K_M.gguf", 4),
            ("mmproj-M-f16.gguf", 1),
            ("README.md", 1),
        )
    )
    assert [(m.quant, m.size, m.complete) for m in models] == [
        ("Q4_K_M", 4, True),
        ("Q8_0", 5, True),
    ]
    assert models[1].first.path == "Q8_0/M-Q8_0-00001-of-00002.gguf"
    partial = group_models(files(("M-Q8_0-00001-of-00003.gguf", 3)))
    assert not partial[0].complete


def test_choosing_by_quantization() -> None:
    models = group_models(files(("M-Q4_K_M.gguf", 4), ("M.Q8_0.gguf", 8), ("M-UD-Q4_K_XL.gguf", 5)))
    assert choose(ModelSpec("o/M", quant="q8_0"), models).first.path == "M.Q8_0.gguf"
    with pytest.raises(AmbiguousModel) as ambiguous:
        choose(ModelSpec("o/M"), models)
    assert len(ambiguous.value.choices) == 3
    with pytest.raises(ModelChoiceError, match="has no IQ2_XS model; its quantizations: Q4_K_M, "):
        choose(ModelSpec("o/M", quant="IQ2_XS"), models)
    with pytest.raises(ModelChoiceError, match="has no GGUF model files"):
        choose(ModelSpec("o/M"), [])


def test_the_gguf_reader_reads_keys_and_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes(smollm_metadata(15), 4096))
    header = read_gguf_header(path)
    assert header.metadata["general.file_type"] == "15"
    assert header.metadata["llama.block_count"] == "30"
    assert (header.tensor_count, header.parameters, header.split_count) == (0, 0, 1)
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(GgufError, match="is not a GGUF file"):
        read_gguf_header(path)
    path.write_bytes(gguf_bytes(smollm_metadata(15), 4096)[:60])
    with pytest.raises(GgufError, match="truncated"):
        read_gguf_header(path)


def test_the_config_takes_a_hub_model_or_a_path_not_both(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[backends.local]\nmodel = "o/M-GGUF:q4_k_m"\n', encoding="utf-8")
    backend = load_config(path).backends["local"]
    assert backend.hub_model == ModelSpec("o/M-GGUF", quant="q4_k_m")  # type: ignore[union-attr]
    path.write_text('[backends.local]\nmodel = "o/M:Q4"\nmodel_path = "m.gguf"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"set model .* or model_path .*, not both"):
        load_config(path)
    path.write_text('[backends.local]\nmodel = "M.gguf"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"backends\.local\.llamacpp\.model: .*OWNER/REPO:QUANT"):
        load_config(path)


def test_a_pulled_model_is_found_after_the_repo_moved_on(tmp_path: Path) -> None:
    folder = tmp_path / "models--o--M-GGUF"
    for commit, name in (("a" * 40, "M-Q4_1.gguf"), ("b" * 40, "M-Q2_K.gguf")):
        (folder / "snapshots" / commit).mkdir(parents=True)
        (folder / "snapshots" / commit / name).write_bytes(gguf_bytes(smollm_metadata(3), 1024))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("b" * 40, encoding="utf-8")
    found = find_local(ModelSpec("o/M-GGUF", quant="Q4_1"), tmp_path)
    assert found == folder / "snapshots" / ("a" * 40) / "M-Q4_1.gguf"
    assert find_local(ModelSpec("o/M-GGUF", quant="Q2_K"), tmp_path) is not None
    assert find_local(ModelSpec("o/M-GGUF", quant="Q8_0"), tmp_path) is None
    assert find_local(ModelSpec("o/Other-GGUF"), tmp_path) is None


# A small GGUF writer whose fields can lie (gguf-py's GGUFWriter writes only valid files).
def _str(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _u32(key: str, value: int) -> bytes:
    return _str(key) + struct.pack("<II", 4, value)


def _tensor(name: str, dims: list[int]) -> bytes:
    return _str(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, 0, 0)


def _gguf(
    kv: list[bytes], tensors: list[bytes] | None = None, *, counts: tuple[int, int] | None = None
) -> bytes:
    """A GGUF v3 header: key/value pairs and tensor records as given, their counts (tensors,
    keys) true unless given."""
    tensors = tensors or []
    n_tensors, n_kv = counts or (len(tensors), len(kv))
    head = GGUF_MAGIC + struct.pack("<IQQ", 3, n_tensors, n_kv)
    return head + b"".join(kv) + b"".join(tensors) + bytes(64)


_NESTED = _str("deep") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 200_000
_MALFORMED = {
    # 200,000 arrays inside each other: RecursionError before.
    "nested-arrays": (_gguf([_NESTED + struct.pack("<IQ", 4, 0)]), "an array of arrays"),
    "key-count-2^63": (_gguf([], counts=(0, 2**63)), "claims 9223372036854775808 metadata keys"),
    "tensor-count-2^63": (_gguf([], counts=(2**63, 0)), "claims 9223372036854775808 tensors"),
    # A u8 array of 2^63 items: seeking past it overflowed (ValueError) before.
    "array-count-2^63": (
        _gguf([_str("a") + struct.pack("<IIQ", 9, 0, 2**63)]),
        "claims 9223372036854775808 array items",
    ),
    "string-array-count-2^63": (
        _gguf([_str("a") + struct.pack("<IIQ", 9, 8, 2**63)]),
        "claims 9223372036854775808 array items",
    ),
    "string-length-2^63": (
        _gguf([struct.pack("<Q", 2**63)]),
        "claims 9223372036854775808 bytes of a string",
    ),
    # ZeroDivisionError before.
    "alignment-0": (_gguf([_u32("general.alignment", 0)]), "must be a u32 power of two; it is '0'"),
    "alignment-24": (_gguf([_u32("general.alignment", 24)]), "it is '24'"),
    # ValueError (int("thirty-two")) before.
    "alignment-string": (
        _gguf([_str("general.alignment") + struct.pack("<I", 8) + _str("thirty-two")]),
        "it is 'thirty-two' (GGUF type 8)",
    ),
    # 106 s of CPU before (the product of 200,000 dimensions).
    "tensor-200k-dims": (
        _gguf([], [_tensor("t", [7] * 200_000)]),
        "tensor 't' has 200000 dimensions (ggml allows 4)",
    ),
    "tensor-too-many-elements": (
        _gguf([], [_tensor("t", [2**32, 2**32])]),
        "tensor 't' has an impossible shape",
    ),
    "unknown-type": (_gguf([_str("k") + struct.pack("<I", 13)]), "unknown GGUF value type 13"),
}


@pytest.mark.parametrize("case", list(_MALFORMED), ids=list(_MALFORMED))
def test_a_malformed_header_is_a_gguf_error_at_once(tmp_path: Path, case: str) -> None:
    data, message = _MALFORMED[case]
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(data)
    started = time.process_time()
    with pytest.raises(GgufError, match=re.escape(message)):
        read_gguf_header(path)
    assert time.process_time() - started < 1.0


def test_a_power_of_two_alignment_is_read(tmp_path: Path) -> None:
    path = tmp_path / "aligned.gguf"
    path.write_bytes(_gguf([_u32("general.alignment", 64)], [_tensor("t", [4, 2])]))
    header = read_gguf_header(path)
    assert header.data_offset % 64 == 0
    assert header.parameters == 8


def test_rm_deletes_nothing_outside_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    snapshots = cache / "models--o--M-GGUF" / "snapshots"
    (snapshots / ("a" * 40)).mkdir(parents=True)
    outside = tmp_path / "mine.gguf"  # someone's own file, linked into the cache
    outside.write_bytes(gguf_bytes(smollm_metadata(3), 1024))
    (snapshots / ("a" * 40) / "M-Q4_1.gguf").symlink_to(outside)
    elsewhere = tmp_path / "elsewhere"  # a snapshot folder that is a link out of the cache
    elsewhere.mkdir()
    (elsewhere / "M-Q8_0.gguf").write_bytes(gguf_bytes(smollm_metadata(7), 1024))
    (snapshots / ("b" * 40)).symlink_to(elsewhere)

    remove(ModelSpec("o/M-GGUF", quant="Q4_1"), cache)
    assert outside.is_file()
    assert not (snapshots / ("a" * 40) / "M-Q4_1.gguf").exists()  # the link is gone
    with pytest.raises(ModelError, match=r"M-Q8_0\.gguf is in a folder that links out of the"):
        remove(ModelSpec("o/M-GGUF", quant="Q8_0"), cache)
    assert (elsewhere / "M-Q8_0.gguf").is_file()
