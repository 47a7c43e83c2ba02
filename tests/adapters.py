"""Tiny LoRA adapters for the bundled SmolLM2, written with llama.cpp's own gguf-py.

The file is what llama.cpp's convert_lora_to_gguf.py writes for a PEFT adapter: general.type
"adapter", adapter.type "lora", adapter.lora.alpha, and for each adapted weight W (e.g.
blk.0.attn_q.weight) a pair W.lora_a with ne [n_in, rank] and W.lora_b with ne [rank, n_out]
(llama-adapter.cpp checks these against W's shape). Shapes are read from the bundled model.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from botkit.backends.model_files import bundled_model_path

# PEFT's usual choice (and the workshops'): the attention query and value projections.
TARGETS = ("attn_q", "attn_v")


def write_adapter(
    path: Path,
    *,
    rank: int = 4,
    alpha: float = 8.0,
    b_scale: float = 0.0,
    seed: int = 0,
    arch: str | None = None,
) -> Path:
    """An adapter for every layer's TARGETS: A random (as PEFT initialises it), B zero (as
    PEFT initialises it, so the adapter changes nothing) or random with b_scale. arch: claim
    another architecture than the model's (llama.cpp must refuse it)."""
    model = gguf.GGUFReader(bundled_model_path())
    arch = arch or str(model.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(path, arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    rng = np.random.default_rng(seed)
    for tensor in model.tensors:
        if not any(tensor.name.endswith(f".{t}.weight") for t in TARGETS):
            continue
        n_in, n_out = (int(d) for d in tensor.shape)  # ggml order: ne[0] is the row length
        a = rng.normal(0.0, 1.0 / np.sqrt(n_in), (rank, n_in)).astype(np.float32)
        b = (rng.normal(0.0, 1.0, (n_out, rank)) * b_scale).astype(np.float32)
        writer.add_tensor(f"{tensor.name}.lora_a", a)
        writer.add_tensor(f"{tensor.name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
