"""What /model shows of a llama.cpp model and its LoRA adapter: facts from GGUF metadata.

A model's metadata comes from llama.cpp (the loaded `Llama`). An adapter's rank is not in its
metadata, only in its tensors' shapes, which llama.cpp does not expose: they are read from the
file's header with gguf_file.py (the same reader `botkit models` uses).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from botkit.backends.base import BackendInfo, LoraAdapter
from botkit.backends.gguf_file import read_gguf_header

__all__ = [
    "describe_adapter",
    "describe_model",
    "kv_bytes_per_token",
    "quantization_name",
]

# llama.cpp's `general.file_type` values (enum llama_ftype) for the common formats.
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}  # fmt: skip


def quantization_name(file_type: str | None) -> str | None:
    """Human name of a GGUF `general.file_type` value (e.g. "3" → "Q4_1")."""
    if file_type is None:
        return None
    try:
        return _FILE_TYPES.get(int(file_type), f"type {file_type}")
    except ValueError:
        return file_type


def kv_bytes_per_token(meta: dict[str, str]) -> int | None:
    """Bytes of KV cache one token of context takes (K and V, all layers, f16), if known."""
    arch = meta.get("general.architecture", "")
    try:
        layers = int(meta[f"{arch}.block_count"])
        heads = int(meta[f"{arch}.attention.head_count"])
        kv_heads = int(meta.get(f"{arch}.attention.head_count_kv") or heads)
        head_dim = int(meta[f"{arch}.embedding_length"]) // heads
    except (KeyError, ValueError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head_dim * 2  # K and V, f16 (llama.cpp's default)


def describe_adapter(path: Path, scale: float) -> LoraAdapter:
    """A LoRA adapter's rank (from its lora_a tensors' shapes), alpha and targets; ValueError
    when the file is not a GGUF LoRA adapter (llama.cpp's convert_lora_to_gguf.py format)."""
    header = read_gguf_header(path)
    meta = header.metadata
    shapes = {tensor.name: tensor.dims for tensor in header.tensors}
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise ValueError(
            f"{path.name} is not a LoRA adapter (general.type = {meta.get('general.type')!r}, "
            f"adapter.type = {meta.get('adapter.type')!r}; convert_lora_to_gguf.py writes "
            "'adapter' and 'lora')"
        )
    # lora_a has ne = [n_in, rank], lora_b [rank, n_out] (llama-adapter.cpp checks them).
    for name, dims in shapes.items():
        if name.endswith((".lora_a", ".lora_b")) and len(dims) != 2:
            raise ValueError(
                f"{path.name}: tensor {name} has shape {list(dims)}; a LoRA matrix has two "
                "dimensions (lora_a [n_in, rank], lora_b [rank, n_out])"
            )
    ranks = {dims[1] for name, dims in shapes.items() if name.endswith(".lora_a")}
    if len(ranks) != 1:
        raise ValueError(f"{path.name} has no lora_a tensors of one rank (found {sorted(ranks)})")
    targets = tuple(n.removesuffix(".lora_a") for n in shapes if n.endswith(".lora_a"))
    parameters = sum(
        math.prod(dims) for name, dims in shapes.items() if name.endswith((".lora_a", ".lora_b"))
    )
    return LoraAdapter(
        file=path.name,
        rank=ranks.pop(),
        alpha=float(meta.get("adapter.lora.alpha", "0")),
        scale=scale,
        targets=targets,
        parameters=parameters,
    )


def describe_model(
    name: str,
    llm: Any,
    path: Path | None,
    n_ctx: int,
    slots: int = 1,
    lora: LoraAdapter | None = None,
) -> BackendInfo:
    """Model facts from the GGUF metadata and llama.cpp."""
    meta: dict[str, str] = llm.metadata
    arch = meta.get("general.architecture", "")
    trained = meta.get(f"{arch}.context_length")
    return BackendInfo(
        backend=name,
        kind="llama.cpp",
        # The file name is what people recognise ("SmolLM2-135M-Instruct.Q4_1");
        # general.name is often a training-run label.
        model_name=path.stem if path else meta.get("general.name", "?"),
        parameters=int(llm._model.n_params()),
        quantization=quantization_name(meta.get("general.file_type")),
        context_length=n_ctx,
        trained_context_length=int(trained) if trained else None,
        file_size=path.stat().st_size if path else None,
        kv_bytes_per_token=kv_bytes_per_token(meta),
        slots=slots,
        lora=lora,
        extra={
            "architecture": arch,
            "size label": meta.get("general.size_label", "?"),
            "GGUF name": meta.get("general.name", "?"),
            "file": path.name if path else "?",
        },
    )
