"""3. History growth: building a prompt stays flat as a chat's stored history grows.

Times what a turn does before generating — load the chat and its settings, select the newest
messages that fit (one index range scan from the trimming position), count tokens — for chats
with 10 to 1,000,000 stored messages. The repository's in-memory caches are dropped before each
sample, so this is the database path (a warm chat's turn reads nothing at all).
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

from bench.common import Result, incoming, median, started_bot
from botkit.core.streaming import TextTarget

SIZES = [10, 1_000, 100_000, 1_000_000]
REPEAT = 100  # medians of 30 moved by 2x between runs on the 2-core machine


async def run() -> list[Result]:
    """Median prompt-building time per history size."""
    timings: dict[int, float] = {}
    async with started_bot() as bot:
        backend = bot.backends["local"]
        database = str(bot.repo.engine.url.database)
        for size in SIZES:
            chat = await bot.repo.chat(incoming("", f"history-{size}").chat)
            now = datetime.now(UTC).isoformat(sep=" ")
            rows = (
                (chat.id, "user" if i % 2 == 0 else "assistant", None,
                 f"message {i} of a long conversation", 12, backend.tokenizer_id, "complete",
                 None, now)
                for i in range(size)
            )  # fmt: skip
            with sqlite3.connect(database) as db:  # bulk load; the bot's own writes are turns
                db.executemany(
                    "INSERT INTO messages (chat_id, role, author, content, token_count, "
                    "tokenizer_id, status, seed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                (last,) = db.execute("SELECT max(id) FROM messages").fetchone()
                # A chat this long has been trimmed many times: its window starts near the end.
                db.execute(
                    "UPDATE chats SET window_start_id = ? WHERE id = ?",
                    (max(0, last - 120) if size > 120 else 0, chat.id),
                )
            samples = []
            for _ in range(REPEAT):
                bot.repo.drop_caches()  # measure the database path, as after a restart
                start = time.perf_counter()
                ctx = await bot.router.context(incoming("Next?", f"history-{size}"), _Null())
                backend = bot.backends[ctx.settings.backend]
                kept = await bot.conversation.planner.history(ctx.chat, backend)
                await bot.conversation.planner.plan(
                    ctx.chat, ctx.settings, kept, {"role": "user", "content": "Next?"}
                )
                samples.append(time.perf_counter() - start)
            timings[size] = median(samples)
    small, large = timings[SIZES[0]], timings[SIZES[-1]]
    return [
        Result(f"prompt build, {size:,} messages", timings[size] * 1000, small * 1000, "ms",
               timings[size] / small, "≤ 2 (1M: < 5 ms)",
               timings[size] / small <= 2 and (size != SIZES[-1] or large < 0.005))
        for size in SIZES[1:]
    ]  # fmt: skip


class _Null(TextTarget):
    max_length = 1_000_000
    min_edit_interval = 0.0

    async def send(self, text: str) -> int:
        return 0

    async def edit(self, handle: int, text: str) -> None:
        return None
