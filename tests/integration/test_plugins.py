"""Plugins: the example plugin from plugins/, a broken plugin, entry of commands into /help."""

from __future__ import annotations

import re
from pathlib import Path

from botkit.core.app import Bot
from tests.conftest import REPO, MakeConfig, say


async def test_example_plugin_loads_from_the_config(make_config: MakeConfig) -> None:
    bot = Bot(make_config(plugins={"paths": [str(REPO / "plugins")], "enabled": ["dice"]}))
    await bot.start()
    try:
        reply = (await say(bot, "/roll 3d6")).text
        match = re.fullmatch(r"🎲 3d6: (\d) \+ (\d) \+ (\d) = (\d+)", reply)
        assert match is not None, reply
        dice = [int(g) for g in match.groups()[:3]]
        assert all(1 <= d <= 6 for d in dice)
        assert sum(dice) == int(match.group(4))
        bad = (await say(bot, "/roll lots")).text
        assert "Allowed: text matching ^\\d{1,3}d\\d{1,4}$ (like 2d6)" in bad
        assert "/roll [spec…] — Roll dice" in (await say(bot, "/help")).text
        assert "[dice]" in (await say(bot, "/help")).text
    finally:
        await bot.close()


async def test_a_broken_plugin_is_reported_and_the_bot_still_starts(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "myplugins"
    folder.mkdir()
    (folder / "broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    config = make_config(
        plugins={
            "paths": [str(folder), str(REPO / "plugins")],
            "enabled": ["broken", "dice", "nope"],
        }
    )
    bot = Bot(config)
    await bot.start()
    try:
        assert len(bot.plugin_errors) == 2
        assert "plugin 'broken' failed to load: ModuleNotFoundError" in bot.plugin_errors[0]
        assert "plugin 'nope' failed to load: LookupError" in bot.plugin_errors[1]
        assert (await say(bot, "/roll 1d2")).text.startswith("🎲")
    finally:
        await bot.close()
