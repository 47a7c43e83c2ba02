"""Plugins: the shipped examples (dice with its store, summarize with the model), the user's
plugins/ folder and its example, a broken plugin, the narrow plugin context, commands in /help,
and a wheel that works on its own."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from sqlalchemy import text

from botkit.backends.base import Backend
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.config import Config, load_config
from botkit.store.db import create_engine, upgrade
from botkit.store.plugin_data import Quota
from botkit.store.repository import Repository
from tests.conftest import REPO, MakeConfig, incoming, say


async def test_example_plugin_loads_from_the_config(make_config: MakeConfig) -> None:
    config = make_config(plugins={"enabled": ["dice"]})  # shipped: found by its entry point
    async with build_bot(config) as bot:
        reply = (await say(bot, "/roll 3d6")).text
        match = re.fullmatch(
            r"🎲 3d6: (\d) \+ (\d) \+ (\d) = (\d+) \(roll #1 in this chat\)", reply
        )
        assert match is not None, reply
        dice = [int(g) for g in match.groups()[:3]]
        assert all(1 <= d <= 6 for d in dice)
        assert sum(dice) == int(match.group(4))
        bad = (await say(bot, "/roll lots")).text
        assert "Allowed: text matching ^\\d{1,3}d\\d{1,4}$ (like 2d6)" in bad
        assert "/roll [spec…] — Roll dice" in (await say(bot, "/help")).text
        assert "[dice]" in (await say(bot, "/help")).text
        assert (await say(bot, "/roll")).text.endswith("(roll #2 in this chat)")
        assert (await say(bot, "/roll", chat="b")).text.endswith("(roll #1 in this chat)")
    # The plugin's store is in the database: the tally survives a restart.
    async with build_bot(config) as bot:
        assert (await say(bot, "/roll")).text.endswith("(roll #3 in this chat)")


async def test_concurrent_rolls_lose_nothing(db_url: str) -> None:
    """Rolls at once in one chat, from two processes on one database: every roll counts
    once (a get and a set lost rolls; the tally is one atomic update)."""
    config = Config(storage={"url": db_url}, plugins={"enabled": ["dice"]})
    async with build_bot(config, backends={"local": ScriptedBackend("local")}) as one:
        replies = [await say(one, "/roll")]  # the chat exists before the other process starts
        async with build_bot(config, backends={"local": ScriptedBackend("local")}) as two:
            replies += await asyncio.gather(*(say(bot, "/roll") for bot in [one, two] * 12))
    numbers = sorted(int(re.findall(r"roll #(\d+) in this chat", r.text)[0]) for r in replies)
    assert numbers == list(range(1, 26))


def write_plugin(folder: Path, name: str, declared: str) -> None:
    """A plugin file name.py calling itself declared: /NAME_put KEY BYTES stores BYTES
    characters (in the chat, or with a third argument 1 in its own space), /NAME_get KEY shows
    a value."""
    (folder / f"{name}.py").write_text(
        "from botkit.plugins.api import Plugin, PluginContext\n"
        f"plugin = Plugin({declared!r})\n"
        f"@plugin.command('{name}_put')\n"
        "async def put(ctx: PluginContext, key: str, size: int, own: int = 0) -> str:\n"
        "    await (ctx.store if own else ctx.data).set(key, 'x' * size)\n"
        "    return 'stored'\n"
        f"@plugin.command('{name}_get')\n"
        "async def get(ctx: PluginContext, key: str) -> str:\n"
        "    return repr(await ctx.data.get(key))\n",
        encoding="utf-8",
    )


async def test_plugin_data_has_a_quota_per_plugin_and_chat(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    write_plugin(tmp_path, "notes", "notes")
    config = make_config(
        plugins={"paths": [str(tmp_path)], "enabled": ["notes"], "data_max_rows": 3,
                 "data_max_bytes": 100},
    )  # fmt: skip
    async with build_bot(config, backends={"local": ScriptedBackend("local")}) as bot:
        for key in ("a", "b", "c"):
            assert (await say(bot, f"/notes_put {key} 10")).text == "stored"
        full = (await say(bot, "/notes_put d 10")).text
        assert full == (
            "⚠ the notes plugin's data in this chat is full: this would make 4 values, over "
            "the 3 allowed ([plugins] data_max_rows); nothing was changed"
        )
        assert (await say(bot, "/notes_get d")).text == "None"
        assert (await say(bot, "/notes_put a 70")).text == "stored"  # 72 + 12 + 12 bytes
        big = (await say(bot, "/notes_put b 80")).text
        assert "this would make 166 bytes, over the 100 allowed ([plugins] data_max_bytes)" in big
        assert (await say(bot, "/notes_get b")).text == repr("x" * 10)
        # Another chat, and the plugin's own space, have quotas of their own.
        assert (await say(bot, "/notes_put d 10", chat="b")).text == "stored"
        assert (await say(bot, "/notes_put d 10 1")).text == "stored"
        # Smaller values always fit, even over a quota lowered since.
        assert (await say(bot, "/notes_put a 1")).text == "stored"


async def test_plugin_data_goes_by_the_name_the_plugin_was_loaded_as(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """Two plugins that call themselves the same keep apart: each has the space of the name
    it was enabled as."""
    write_plugin(tmp_path, "alpha", "same")
    write_plugin(tmp_path, "beta", "same")
    config = make_config(plugins={"paths": [str(tmp_path)], "enabled": ["alpha", "beta"]})
    async with build_bot(config, backends={"local": ScriptedBackend("local")}) as bot:
        await say(bot, "/alpha_put secret 3")
        assert (await say(bot, "/alpha_get secret")).text == "'xxx'"
        assert (await say(bot, "/beta_get secret")).text == "None"
        shown = (await say(bot, "/help")).text
        assert "[alpha]" in shown
        assert "[beta]" in shown


async def test_a_kill_inside_an_update_leaves_the_value_as_it_was(db_url: str) -> None:
    """Killed after each statement of an update (of an existing key, then of a new one): the
    value is the old one or the new one, and a new key is absent or whole."""
    engine = create_engine(db_url)
    await upgrade(engine)
    repo = Repository(engine)
    quota = Quota(rows=10, bytes=1000)
    await repo.plugin_data.update("dice", 1, "rolls", lambda _: 5, quota)
    seen = set()
    try:
        for kill_at in range(1, 50):
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.kill_between", db_url, "update", str(kill_at),
                cwd=REPO, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await child.communicate()
            state = (
                await repo.plugin_data.get("dice", 1, "rolls"),
                await repo.plugin_data.get("dice", 1, "new"),
            )
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT count(*) FROM plugin_data"))).scalar_one()
            assert (state, rows) in [((5, None), 1), ((6, None), 1), ((6, "first"), 2)]
            seen.add(state)
            if child.returncode == 0:
                break
            assert child.returncode == -9, stderr.decode()
            await repo.plugin_data.update("dice", 1, "rolls", lambda _: 5, quota)
            await repo.plugin_data.update("dice", 1, "new", lambda _: None, quota)
        assert seen == {(5, None), (6, None), (6, "first")}
    finally:
        await repo.close()
        await engine.dispose()


async def test_a_broken_plugin_is_reported_and_the_bot_still_starts(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "myplugins"
    folder.mkdir()
    (folder / "broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    config = make_config(
        plugins={
            "paths": [str(folder)],
            "enabled": ["broken", "dice", "nope"],
        }
    )
    async with build_bot(config) as bot:
        assert len(bot.plugin_errors) == 2
        assert "plugin 'broken' failed to load: ModuleNotFoundError" in bot.plugin_errors[0]
        assert "plugin 'nope' failed to load: LookupError" in bot.plugin_errors[1]
        assert (await say(bot, "/roll 1d2")).text.startswith("🎲")


async def test_summarize_uses_the_model_through_the_rules_and_stores_nothing(
    make_config: MakeConfig,
) -> None:
    backend = ScriptedBackend("local")
    config = make_config(plugins={"enabled": ["summarize"]}, service={"rate_limit_per_minute": 3})
    async with build_bot(config, backends={"local": backend}) as bot:
        assert "Nothing to summarize" in (await say(bot, "/summarize")).text
        backend.enqueue("Nice to meet you, Ana.", "Ana said hello.")
        await say(bot, "Hi, I'm Ana")
        assert (await say(bot, "/summarize")).text == "Ana said hello."
        prompt = backend.prompts[-1]
        assert prompt[0] == {"role": "system", "content": "You write short, factual summaries."}
        assert "User: Hi, I'm Ana\nAssistant: Nice to meet you, Ana." in prompt[1]["content"]
        chat = await bot.repo.chat(incoming("").chat)
        assert len(await bot.repo.window(chat.id, 0)) == 2  # the summary is not in the history
        # Three uses of the model this minute (the first /summarize had nothing to do, but
        # counted): a fourth is refused like a chat message.
        assert "faster than 3 a minute" in (await say(bot, "/summarize")).text


async def test_a_plugin_sees_only_the_plugin_context(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    (tmp_path / "peek.py").write_text(
        "from botkit.plugins.api import Plugin, PluginContext\n"
        "plugin = Plugin('peek')\n"
        "@plugin.command('peek')\n"
        "async def peek(ctx: PluginContext) -> str:\n"
        "    names = sorted(n for n in dir(ctx) if not n.startswith('_'))\n"
        "    return ' '.join(names)\n",
        encoding="utf-8",
    )
    config = make_config(plugins={"paths": [str(tmp_path)], "enabled": ["peek"]})
    async with build_bot(config) as bot:
        shown = (await say(bot, "/peek")).text.split()
    assert shown == [
        "attachments", "chat_id", "data", "generate", "history", "is_dm", "reply",
        "reply_error", "reply_image", "settings", "store", "user_name",
    ]  # fmt: skip


def test_the_built_wheel_with_the_init_config_loads_its_plugins(tmp_path: Path) -> None:
    """pip install of the wheel, `botkit init`, `botkit chat`: no plugin fails to load."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(REPO)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("botkit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    # The dependencies (llama-cpp-python takes minutes to build) come from this environment,
    # as a plain path: its editable botkit is not visible there.
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    where = subprocess.run(
        [str(python), "-c", "import botkit; print(botkit.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.startswith(str(venv))
    work = tmp_path / "work"
    work.mkdir()
    botkit = str(venv / "bin" / "botkit")
    subprocess.run([botkit, "init"], cwd=work, check=True, capture_output=True, timeout=60)
    result = subprocess.run(
        [botkit, "chat"], input="/roll 2d6\n/help\n", cwd=work, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "failed to load" not in result.stderr
    assert "🎲 2d6:" in result.stdout
    assert "/summarize" in result.stdout


def _default_config_with_notes(tmp_path: Path) -> Config:
    """config.example.toml as `botkit init` writes it, with notes added to [plugins] enabled
    (step 2 of the README's walk-through) and the database in tmp_path."""
    config = load_config(REPO / "config.example.toml")
    assert config.plugins.paths == [Path("plugins")]
    plugins = config.plugins.model_copy(update={"enabled": [*config.plugins.enabled, "notes"]})
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    storage = config.storage.model_copy(update={"url": url})
    return config.model_copy(update={"plugins": plugins, "storage": storage})


async def test_the_plugins_folder_example_loads_from_the_default_config(tmp_path: Path) -> None:
    config = _default_config_with_notes(tmp_path)
    backends: dict[str, Backend] = {"local": ScriptedBackend("local")}
    async with build_bot(config, backends=backends, base_dir=REPO) as bot:
        assert bot.plugin_errors == []  # notes from plugins/, dice and summarize by entry point
        assert [p.name for p in bot.registry.plugins][-3:] == ["dice", "summarize", "notes"]
        assert (await say(bot, "/notes")).text.startswith("No notes in this chat yet")
        assert (await say(bot, "/note buy oat milk")).text == "📝 noted (#1); /notes lists them"
        assert (await say(bot, "/note call Ana at 5")).text.startswith("📝 noted (#2)")
        assert (await say(bot, "/notes")).text == "1. buy oat milk\n2. call Ana at 5"
        assert (await say(bot, "/notes", chat="b")).text.startswith("No notes")
        assert (
            await say(bot, "/unnote 3")
        ).text == "⚠ /unnote 3: this chat has 2 notes; /notes lists them"
        too_long = (await say(bot, "/note " + "x" * 201)).text
        assert "Allowed: text at most 200 characters" in too_long
        assert "/note <text…> — Keep a note in this chat" in (await say(bot, "/help")).text
        assert (await say(bot, "/unnote 1")).text == "🗑 deleted #1: buy oat milk"
    # The notes are in botkit's database: they survive a restart.
    async with build_bot(config, backends=backends, base_dir=REPO) as bot:
        assert (await say(bot, "/notes")).text == "1. call Ana at 5"
        assert (await say(bot, "/unnote 1")).text.startswith("🗑 deleted #1")
        assert (
            await say(bot, "/unnote 1")
        ).text == "⚠ /unnote 1: this chat has 0 notes; /notes lists them"


async def test_notes_sent_at_once_are_all_kept(tmp_path: Path) -> None:
    """Each /note reads, appends and writes the chat's list: the router answers a chat's
    commands in arrival order, so none is lost to another's write."""
    config = _default_config_with_notes(tmp_path)
    async with build_bot(
        config, backends={"local": ScriptedBackend("local")}, base_dir=REPO
    ) as bot:
        await asyncio.gather(*(say(bot, f"/note n{i}") for i in range(20)))
        assert (await say(bot, "/notes")).text.splitlines() == [f"{i + 1}. n{i}" for i in range(20)]
        full = (await say(bot, "/note one more")).text
        assert full == "⚠ this chat has 20 notes, the most it keeps; /unnote N first"
