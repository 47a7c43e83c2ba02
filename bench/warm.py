"""2. Warm follow-ups: long conversations interleaving on one model keep their prefix warm.

Nine chats, each with a history filling ~75 % of a 4,096-token window, take turns. The first
turn of each is a cold prefill of its whole history (what a bot that resends the conversation
to a fresh context pays every turn); later turns restore the chat's saved state and evaluate
only what is new.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Result, TimingTarget, incoming, median, started_bot
from botkit.backends.base import Message, Role
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage

WINDOW = 4096
CHATS = 9
SENTENCES = [
    "The lighthouse keeper counted the ships that passed in the night.",
    "A recipe for bread needs flour, water, salt and a little patience.",
    "Rivers carve valleys over thousands of years, grain by grain.",
    "The orchestra tuned to the oboe before the concert began.",
    "Bees dance to tell each other where the flowers are.",
]


async def run(rounds: int = 3) -> list[Result]:
    """Cold first turn against warm later turns, per chat."""
    sections: dict[str, Any] = {
        "backends": {"local": {"n_ctx": WINDOW, "state_cache_bytes": 2 * 1024**3}},
        "defaults": {"max_tokens": 32, "seed": 7},
    }
    cold: dict[str, float] = {}
    warm: dict[str, list[float]] = {}
    kept = moves = 0
    async with started_bot(**sections) as bot:
        backend = bot.backends["local"]
        target_tokens = int(WINDOW * 0.75)
        for n in range(CHATS):
            chat = await bot.repo.chat(incoming("", f"warm-{n}").chat)
            total = 0
            turn = 0
            while total < target_tokens - 200:
                user: Message = {"role": "user", "content": f"Chat {n}, turn {turn}: "
                                 + SENTENCES[(turn + n) % 5]}  # fmt: skip
                reply: Message = {"role": "assistant", "content": " ".join(SENTENCES[turn % 3 :])}
                rows = []
                for m in (user, reply):
                    count = await backend.message_tokens(m)
                    total += count
                    rows.append(
                        NewMessage(Role(m["role"]), None, m["content"], count, backend.tokenizer_id,
                                   MessageStatus.COMPLETE)
                    )  # fmt: skip
                await bot.repo.add_messages(chat.id, rows)
                turn += 1
        for round_ in range(rounds):
            for n in range(CHATS):
                name = f"warm-{n}"
                before = (await bot.repo.chat(incoming("", name).chat)).window_start_id
                target = TimingTarget()
                ctx = await bot.router.context(incoming("And then?", name), target)
                start = time.perf_counter()
                await bot.conversation.respond(ctx, f"And then? (round {round_})")
                assert target.first is not None
                ttft = target.first - start
                if round_ == 0:
                    cold[name] = ttft
                else:
                    warm.setdefault(name, []).append(ttft)
                    after = (await bot.repo.chat(incoming("", name).chat)).window_start_id
                    kept += after == before
                    moves += after != before
    ratios = {name: max(warm[name]) / cold[name] for name in cold}
    worst = max(ratios, key=lambda name: ratios[name])
    turns = kept + moves
    return [
        Result("follow-up TTFT, warm vs cold (worst chat)", max(warm[worst]) * 1000,
               cold[worst] * 1000, "ms", ratios[worst], "≤ 0.1", ratios[worst] <= 0.1,
               f"{CHATS} chats interleaving; median cold {median(list(cold.values())):.2f} s"),
        Result("turns that kept the prompt prefix", kept, turns, "", kept / turns, "most",
               kept / turns >= 0.8, f"{moves} trims in {turns} warm turns"),
    ]  # fmt: skip
