"""Conversation.plan on the scripted backend (the fast tier): what a prompt keeps within the
window, and the hysteresis that keeps its prefix stable."""

from __future__ import annotations

import itertools

from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from tests.conftest import MakeConfig, incoming, say


async def test_the_prompt_fits_keeps_the_newest_and_moves_its_start_rarely(
    make_config: MakeConfig,
) -> None:
    backend = ScriptedBackend("local", context_window=600)
    config = make_config(service={"rate_limit_per_minute": 0}, defaults={"max_tokens": 64})
    async with build_bot(config, backends={"local": backend}) as bot:
        starts = []
        for turn in range(30):
            await say(bot, f"message {turn}: " + "word " * 30)
            chat = await bot.repo.chat(incoming("").chat)
            starts.append(chat.window_start_id)
        for prompt in backend.prompts:
            assert await backend.count_tokens(prompt) + 64 <= 600
        assert backend.prompts[-1][-1]["content"].startswith("message 29:")
        assert backend.prompts[-1][0]["role"] == "system"
        moves = sum(1 for a, b in itertools.pairwise(starts) if a != b)
        assert 1 <= moves <= 8  # trimmed in steps down to history.trim_to, not every turn
        chat = await bot.repo.chat(incoming("").chat)
        rows = await bot.conversation.planner.history(chat, backend)
        plan = await bot.conversation.planner.plan(chat, bot.settings_for(chat), rows, None)
        assert plan.used + plan.reserve <= plan.window
        assert plan.messages[1]["role"] == "user"  # a kept history never starts with a reply
