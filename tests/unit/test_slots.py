"""What the llama.cpp backend takes of the machine: slots for parallel = "auto", and threads."""

from __future__ import annotations

import os
from pathlib import Path

from botkit.backends.llama_slots import AUTO_SLOTS, choose_slots, llama_threads
from botkit.machine import available_memory, cpu_cores

KV = 48 * 1024  # KV bytes per token of a small model (f16)
GIB = 1024**3


def test_a_single_core_or_unknown_facts_give_one_slot() -> None:
    assert choose_slots(cores=1, kv_bytes_per_token=KV, n_ctx=2048, n_batch=512,
                        available=16 * GIB) == 1  # fmt: skip
    assert choose_slots(cores=None, kv_bytes_per_token=KV, n_ctx=2048, n_batch=512,
                        available=16 * GIB) == 1  # fmt: skip
    assert choose_slots(cores=4, kv_bytes_per_token=None, n_ctx=2048, n_batch=512,
                        available=16 * GIB) == 1  # fmt: skip
    assert choose_slots(cores=4, kv_bytes_per_token=KV, n_ctx=2048, n_batch=512,
                        available=None) == 1  # fmt: skip


def test_several_cores_get_up_to_eight_slots_within_memory_and_batch() -> None:
    assert choose_slots(cores=2, kv_bytes_per_token=KV, n_ctx=2048, n_batch=512,
                        available=16 * GIB) == AUTO_SLOTS  # fmt: skip
    # A quarter of 1 GiB holds 2 full windows of 96 MiB, not 3.
    assert choose_slots(cores=8, kv_bytes_per_token=KV, n_ctx=2048, n_batch=512,
                        available=GIB) == 2  # fmt: skip
    # A 7B model at 32k context: 128 KiB a token is 4 GiB a slot; 24 GiB free gives 1.
    assert choose_slots(cores=16, kv_bytes_per_token=128 * 1024, n_ctx=32768, n_batch=2048,
                        available=24 * GIB) == 1  # fmt: skip
    # The batch must hold two tokens of every slot.
    assert choose_slots(cores=8, kv_bytes_per_token=KV, n_ctx=2048, n_batch=8,
                        available=16 * GIB) == 4  # fmt: skip


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24576000 kB\nMemAvailable:    1000 kB\n")
    assert available_memory(meminfo) == 1000 * 1024
    meminfo.write_text("MemTotal:       24576000 kB\n")
    assert available_memory(meminfo) is None
    assert available_memory(tmp_path / "missing") is None


def test_threads_configured_apply_to_replies_and_prompts_alike() -> None:
    assert llama_threads(1, 16) == (1, 1)
    assert llama_threads(6, None) == (6, 6)


def test_default_threads_count_the_cores_this_process_may_use() -> None:
    assert llama_threads(None, 8) == (4, 8)  # llama-cpp-python's split: half to generate
    assert llama_threads(None, 1) == (1, 1)
    assert llama_threads(None, None) == (1, 1)


def test_cores_are_the_affinity_lowered_to_the_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert cpu_cores(tmp_path) == affinity  # no cpu.max: no quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # CPUQuota=50%: still one core
    assert cpu_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(affinity + 4) * 100000} 100000\n")
    assert cpu_cores(tmp_path) == affinity  # a quota above the affinity changes nothing
