"""LoRA adapters on llama.cpp: loaded once per model, set on every context that model has.

llama.cpp keeps a LoRA adapter beside the base weights (W + scale × alpha / rank × BA, computed
at each step) rather than merging it, so the quantized model file is untouched and the single
context and the batched one (llama_batch.py) each need the adapter set on them. The adapter
belongs to the model and is freed with it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import llama_cpp

from botkit.backends.base import BackendUnavailable

__all__ = ["apply_lora", "load_lora"]


def load_lora(model: Any, path: Path, model_name: str) -> Any:
    """Load the adapter at path for a llama.cpp model (a `llama_model_p`)."""
    adapter = llama_cpp.llama_adapter_lora_init(model, str(path).encode())
    if not adapter:
        raise BackendUnavailable(
            f"llama.cpp refused the LoRA adapter {path.name}: it must be made for this model "
            f"({model_name}: the same architecture and tensor shapes), e.g. by llama.cpp's "
            "convert_lora_to_gguf.py"
        )
    return adapter


def apply_lora(ctx: Any, adapter: Any, scale: float) -> None:
    """Set a loaded adapter on a llama.cpp context (a `llama_context_p`) with its scale."""
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(scale)
    if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales) != 0:
        raise BackendUnavailable("llama.cpp could not apply the LoRA adapter to a context")
