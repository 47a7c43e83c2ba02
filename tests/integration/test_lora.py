"""LoRA adapters on the real model: loaded and applied in the single and the batched context,
described by /model from their GGUF metadata."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from botkit.backends.base import BackendUnavailable, GenerationParams, Message
from botkit.backends.gguf_file import read_gguf_header
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.backends.model_files import bundled_model_path
from botkit.compose import build_bot
from botkit.config import LlamaCppConfig
from tests.adapters import TARGETS, write_adapter
from tests.conftest import REPO, MakeConfig, say

PROMPT: list[Message] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
GREEDY = GenerationParams(temperature=0.0, max_tokens=24, seed=1)
LAYERS = 30  # SmolLM2-135M


async def _started(**config: object) -> LlamaCppBackend:
    backend = LlamaCppBackend("local", LlamaCppConfig(n_ctx=512, **config))
    await backend.start()
    return backend


@pytest.fixture
async def base() -> AsyncIterator[LlamaCppBackend]:
    backend = await _started()
    yield backend
    await backend.close()


async def _logits(backend: LlamaCppBackend) -> np.ndarray:
    return await backend.next_token_logits(PROMPT)


async def _reply(backend: LlamaCppBackend, key: str = "c") -> str:
    return "".join([c.text async for c in backend.stream(PROMPT, GREEDY, cache_key=key)])


def test_the_adapter_file_is_what_llama_cpp_expects(tmp_path: Path) -> None:
    path = write_adapter(tmp_path / "lora.gguf")
    header = read_gguf_header(path)
    shapes = {t.name: t.dims for t in header.tensors}
    reference = gguf.GGUFReader(path)  # llama.cpp's own reader agrees with botkit's
    assert shapes == {t.name: tuple(int(d) for d in t.shape) for t in reference.tensors}
    assert header.metadata["general.type"] == "adapter"
    assert header.metadata["adapter.type"] == "lora"
    assert float(header.metadata["adapter.lora.alpha"]) == 8.0
    model = {t.name: t.dims for t in read_gguf_header(bundled_model_path()).tensors}
    for name, (n_in, rank) in shapes.items():
        if name.endswith(".lora_a"):
            weight = name.removesuffix(".lora_a")
            assert rank == 4
            assert model[weight][0] == n_in
            assert shapes[f"{weight}.lora_b"] == (4, model[weight][1])
    assert len(shapes) == 2 * len(TARGETS) * LAYERS


async def test_an_adapter_with_b_zero_changes_nothing(
    tmp_path: Path, base: LlamaCppBackend
) -> None:
    lora = await _started(lora_path=write_adapter(tmp_path / "zero.gguf"))
    try:
        assert np.array_equal(await _logits(lora), await _logits(base))
        assert await _reply(lora) == await _reply(base)
    finally:
        await lora.close()


async def test_an_adapter_with_b_nonzero_changes_the_logits(
    tmp_path: Path, base: LlamaCppBackend
) -> None:
    path = write_adapter(tmp_path / "lora.gguf", b_scale=0.05)
    lora = await _started(lora_path=path)
    off = await _started(lora_path=path, lora_scale=0.0)
    try:
        base_logits = await _logits(base)
        changed = await _logits(lora)
        assert np.abs(changed - base_logits).max() > 0.1
        # Scale 0 turns the same adapter off.
        assert np.array_equal(await _logits(off), base_logits)
    finally:
        await lora.close()
        await off.close()


async def test_the_batched_context_applies_the_adapter_too(tmp_path: Path) -> None:
    strong = write_adapter(tmp_path / "strong.gguf", b_scale=1.0)
    zero = write_adapter(tmp_path / "zero.gguf")
    replies = {}
    for name, path in (("base", None), ("zero", zero), ("strong", strong)):
        backend = await _started(parallel=2, n_batch=64, lora_path=path)
        try:
            replies[name] = await _reply(backend)
        finally:
            await backend.close()
    assert replies["zero"] == replies["base"]
    assert replies["strong"] != replies["base"]


async def test_model_shows_the_adapter_rank_and_alpha(
    tmp_path: Path, make_config: MakeConfig
) -> None:
    path = write_adapter(tmp_path / "tiny-lora.gguf", alpha=16.0)
    config = make_config(backends={"local": {"lora_path": str(path), "lora_scale": 0.5}})
    async with build_bot(config, base_dir=REPO) as bot:
        text = (await say(bot, "/model")).text
    assert (
        "LoRA adapter: tiny-lora.gguf, rank 4, alpha 16, scale 0.5: W + 2 × BA on 60 weight "
        "matrices (attn_q, attn_v)"
    ) in text
    # r × (n_in + n_out) per matrix: 4 × (576 + 576) for attn_q, 4 × (576 + 192) for attn_v.
    assert "A and B matrices hold 230.4K parameters, 0.17% of the model's" in text


async def test_a_file_that_is_not_an_adapter_is_refused_clearly(tmp_path: Path) -> None:
    backend = LlamaCppBackend("local", LlamaCppConfig(lora_path=bundled_model_path()))
    with pytest.raises(BackendUnavailable, match="is not a LoRA adapter"):
        await backend.start()
    missing = LlamaCppBackend("local", LlamaCppConfig(lora_path=tmp_path / "none.gguf"))
    with pytest.raises(BackendUnavailable, match="does not exist"):
        await missing.start()
    other = write_adapter(tmp_path / "qwen.gguf", arch="qwen2")
    foreign = LlamaCppBackend("local", LlamaCppConfig(lora_path=other))
    with pytest.raises(BackendUnavailable, match=r"refused the LoRA adapter qwen\.gguf"):
        await foreign.start()
    for unused in (backend, missing, foreign):
        await unused.close()


def _flat_adapter(path: Path) -> Path:
    """An adapter whose lora_a has one dimension (ne [576]) instead of [n_in, rank]."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 8.0)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros(576, np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((576, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


async def test_a_malformed_adapter_is_refused_clearly_at_start(tmp_path: Path) -> None:
    flat = LlamaCppBackend("local", LlamaCppConfig(lora_path=_flat_adapter(tmp_path / "f.gguf")))
    with pytest.raises(
        BackendUnavailable,
        match=r"f\.gguf: tensor blk\.0\.attn_q\.weight\.lora_a has shape \[576\]; a LoRA matrix "
        r"has two dimensions",
    ):
        await flat.start()
    damaged = tmp_path / "nested.gguf"  # an array of arrays: ggml allows none
    damaged.write_bytes(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
        + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 100_000 + struct.pack("<IQ", 4, 0)
    )  # fmt: skip
    nested = LlamaCppBackend("local", LlamaCppConfig(lora_path=damaged))
    with pytest.raises(BackendUnavailable, match=r"nested\.gguf: an array of arrays"):
        await nested.start()
    for unused in (flat, nested):
        await unused.close()
