"""Shared pieces of the benchmarks: a bot on a temporary database, timing targets, results."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from botkit.backends.base import Backend
from botkit.compose import build_bot
from botkit.config import Config
from botkit.core.app import Bot
from botkit.core.events import ChatKey, Incoming, User
from botkit.core.streaming import TextTarget


@dataclass(frozen=True)
class Result:
    """One row of the results table."""

    figure: str
    botkit: float
    baseline: float
    unit: str
    ratio: float
    goal: str
    passed: bool
    note: str = ""


@asynccontextmanager
async def started_bot(
    backend_objects: dict[str, Backend] | None = None, **sections: Any
) -> AsyncIterator[Bot]:
    """A started Bot whose database lives in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        data: dict[str, Any] = {
            "storage": {"url": f"sqlite+aiosqlite:///{folder}/bench.db"},
            # The benchmark user is one user sending thousands of messages: no per-user limit,
            # and a queue long enough for every message of the fairness run.
            "service": {"rate_limit_per_minute": 0, "max_queue": 10_000},
        }
        storage = {**data["storage"], **sections.pop("storage", {})}
        data.update(sections, storage=storage)
        async with build_bot(Config(**data), backends=backend_objects) as bot:
            yield bot


def incoming(text: str, chat: str) -> Incoming:
    """A message from the benchmark user in chat."""
    return Incoming(ChatKey("bench", chat), User("bench", "bench"), text)


class TimingTarget(TextTarget):
    """Records when the first text of a reply arrived (time to first token).

    A place-in-the-queue note ("⏳ …") is not reply text.
    """

    max_length = 1_000_000
    min_edit_interval = 0.0

    def __init__(self) -> None:
        self.first: float | None = None
        self.text = ""

    def _show(self, text: str) -> None:
        if self.first is None and not text.startswith("⏳"):
            self.first = time.perf_counter()
        self.text = text

    async def send(self, text: str) -> int:
        self._show(text)
        return 0

    async def edit(self, handle: int, text: str) -> None:
        self._show(text)


def median(values: list[float]) -> float:
    """The median (values must not be empty)."""
    return statistics.median(values)


def p99(values: list[float]) -> float:
    """The 99th percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def write_json(results: list[Result], path: Path) -> None:
    """Save the results as JSON."""
    path.write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")
