"""Tools in a chat on the bundled model (llama.cpp in-process): a forced call goes through the
grammar, is parsed, validated, run and answered; the model, which was not trained to call
tools, is given none on its own, and the chat goes on."""

from __future__ import annotations

import json

from botkit.compose import build_bot
from botkit.store.models import MessageStatus
from tests.conftest import REPO, MakeConfig, incoming, say


async def test_a_forced_call_on_the_bundled_model_runs_and_is_answered(
    make_config: MakeConfig,
) -> None:
    config = make_config(defaults={"temperature": 0.0, "max_tokens": 48})
    async with build_bot(config, base_dir=REPO) as bot:
        plain = await say(bot, "Hello!")
        assert "🔧" not in plain.text  # nothing offered: SmolLM2 does not call by itself
        assert "0 (" in next(
            line for line in (await say(bot, "/context")).text.splitlines() if "tools:" in line
        )
        reply = await say(bot, "/tool time What day is it today?")
        assert "🔧 time(" in reply.text
        assert "→ ⚠" not in reply.text  # the call was valid and ran
        chat = await bot.repo.chat(incoming("").chat)
        rows = await bot.repo.window(chat.id, 0)
        roles = [r.role for r in rows]
        assert roles[-4:] == ["user", "assistant", "tool", "assistant"]
        call_row, result_row, answer = rows[-3], rows[-2], rows[-1]
        assert call_row.tool is not None
        (made,) = call_row.tool["calls"]
        assert made["name"] == "time"
        arguments = json.loads(made["arguments"])  # valid JSON for the tool's schema
        assert set(arguments) <= {"zone"}
        assert result_row.status == MessageStatus.COMPLETE
        assert result_row.tool is not None
        assert result_row.tool["call_id"] == made["id"]
        assert result_row.tool["error"] is False
        assert answer.status == MessageStatus.COMPLETE
        assert answer.content  # the model answered after the result
        model = (await say(bot, "/model")).text
        assert "tools: not offered" in model
        assert "/tool NAME" in model
        stats = (await say(bot, "/stats")).text
        assert "tools: 1 call(s)" in stats  # the last reply was the forced call's answer
