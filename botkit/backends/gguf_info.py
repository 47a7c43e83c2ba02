"""What /model shows of a llama.cpp model: facts from its GGUF metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botkit.backends.base import BackendInfo

__all__ = ["describe_model", "kv_bytes_per_token", "quantization_name"]

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


def describe_model(
    name: str, llm: Any, path: Path | None, n_ctx: int, slots: int = 1
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
        extra={
            "architecture": arch,
            "size label": meta.get("general.size_label", "?"),
            "GGUF name": meta.get("general.name", "?"),
            "file": path.name if path else "?",
        },
    )
