"""6. Memory: a running bot with the model loaded and 50 cached chats, against the model file.

The per-chat state cache has a byte limit (backends.NAME.state_cache_bytes); the run sets a
small one and checks it holds.
"""

from __future__ import annotations

import resource
from typing import Any

from bench.common import Result, incoming, started_bot
from botkit.adapters.memory import MemoryTarget
from botkit.backends.llamacpp import LlamaCppBackend
from botkit.backends.model_files import bundled_model_path

LIMIT = 64 * 1024 * 1024
CHATS = 50


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def run() -> list[Result]:
    """Resident memory and the state cache against its limit."""
    size = bundled_model_path().stat().st_size
    sections: dict[str, Any] = {
        "backends": {"local": {"state_cache_bytes": LIMIT}},
        "defaults": {"max_tokens": 8},
    }
    async with started_bot(**sections) as bot:
        for n in range(CHATS):
            await bot.router.handle(incoming(f"Hello number {n}!", f"mem-{n}"), MemoryTarget())
        backend = bot.backends["local"]
        assert isinstance(backend, LlamaCppBackend)
        cache = backend.state_cache
        rss = _rss()
        held, count = cache.size_bytes, len(cache)
    return [
        Result("resident memory vs model file", rss / 1e6, size / 1e6, "MB", rss / size,
               "report", True, f"{CHATS} chats talked, {count} states cached"),
        Result("state cache vs its byte limit", held / 1e6, LIMIT / 1e6, "MB", held / LIMIT,
               "≤ 1", held <= LIMIT),
    ]  # fmt: skip
