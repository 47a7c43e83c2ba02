"""The command line: botkit init | chat | run | db upgrade | check | models | docs | bench."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from botkit.adapters.console import ConsoleAdapter
from botkit.backends.base import BackendError, BackendUnreachable
from botkit.compose import build_bot
from botkit.config import BackendConfig, Config, ConfigError, LlamaCppConfig, load_config
from botkit.core.app import Bot
from botkit.models.commands import add_models_parser, run_models
from botkit.retrieval.commands import add_docs_parser, run_docs
from botkit.secrets import install_redaction, read_secret, redact
from botkit.service import AdapterError, AdapterFailed, build_adapters, run_adapters
from botkit.store.db import NotMigrated, create_engine, ensure_migrated, redact_url, upgrade
from botkit.store.leases import LeaseLost, LeaseTaken
from botkit.systemd import Notifier

__all__ = ["example_config_text", "main"]

DEFAULT_CONFIG = Path("config.toml")


def example_config_text() -> str:
    """The commented example config (shipped in the wheel, or the repository's copy)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_config.example.toml", package.parent / "config.example.toml"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError("config.example.toml is missing from this installation")


def _bench(extra: list[str]) -> int:
    """Run python -m bench in the source checkout this botkit is installed from."""
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "bench" / "__main__.py").is_file():
        print("botkit bench needs a source checkout (the bench/ folder)", file=sys.stderr)
        return 1
    return subprocess.call([sys.executable, "-m", "bench", *extra], cwd=checkout)


def _config_path(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _instance(path: Path | None, command: str) -> str:
    """This process's default name among those sharing a database: the host and the config
    file, so the same config started twice on one host is refused the second time (`botkit
    chat` apart from `botkit run`, which may run beside it). Recovery after a crash does not
    depend on it: it goes by the processes' heartbeats."""
    where = str(path.resolve() if path else Path.cwd())
    if len(where) > 200:
        where = hashlib.sha256(where.encode()).hexdigest()[:32]
    suffix = " (chat)" if command == "chat" else ""
    return f"{socket.gethostname()[:40]}:{where}{suffix}"


def _load(args: argparse.Namespace) -> tuple[Config, Path]:
    path = _config_path(args.config)
    config = load_config(path)
    if config.service.instance is None:
        named = _instance(path, args.command)
        config = config.model_copy(
            update={"service": config.service.model_copy(update={"instance": named})}
        )
    logging.basicConfig(
        level=config.logging.level,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    install_redaction()
    return config, (path.resolve().parent if path else Path.cwd())


def _warn_plugins(bot: Bot) -> None:
    for error in bot.plugin_errors:
        print(f"warning: {error}", file=sys.stderr)


def _one_chat(config: Config) -> Config:
    """The config for `botkit chat`: one person in one chat, so parallel = "auto" is one slot
    (no KV cache for chats that never come)."""
    backends = {
        name: backend.model_copy(update={"parallel": 1})
        if isinstance(backend, LlamaCppConfig) and backend.parallel == "auto"
        else backend
        for name, backend in config.backends.items()
    }
    return config.model_copy(update={"backends": backends})


async def _chat(config: Config, base_dir: Path, chat: str) -> int:
    async with build_bot(_one_chat(config), base_dir=base_dir) as bot:
        _warn_plugins(bot)
        adapter = ConsoleAdapter(chat=chat, user_name=config.console.user_name)
        if adapter.interactive:
            info = await bot.backends[config.defaults.backend].info()
            print(f"botkit: chat {chat!r} with {info.model_name} ({info.backend}). "
                  "/help lists commands; Ctrl-C stops a reply; Ctrl-D quits.")  # fmt: skip
        serving = asyncio.create_task(adapter.start(bot.router))
        lost = asyncio.create_task(bot.lease_lost_event.wait())
        await asyncio.wait({serving, lost}, return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        if bot.lease_lost is not None:
            # Another process took this one's replies as cut: it writes no more of them.
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            raise bot.lease_lost
        await serving
    return 0


async def _start(bot: Bot) -> bool:
    """Start the bot; False when SIGTERM came first. A first start may spend minutes pulling
    its model: the stop ends the download, whose partial file is removed, rather than killing
    the process and leaving it behind."""
    loop = asyncio.get_running_loop()
    starting = asyncio.create_task(bot.start())
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
        loop.add_signal_handler(signal.SIGTERM, starting.cancel)
    try:
        await asyncio.wait([starting])
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    if starting.cancelled():
        await bot.close()
        return False
    if (error := starting.exception()) is not None:
        await bot.close()  # what did start is released
        raise error
    return True


async def _run(config: Config, base_dir: Path) -> int:
    notifier = Notifier()
    notifier.notify("STATUS=loading the model and the database")
    bot = build_bot(config, base_dir=base_dir)
    if not await _start(bot):
        print("botkit: stopped while starting (SIGTERM)", file=sys.stderr)
        return 0
    try:
        _warn_plugins(bot)
        if config.metrics.enabled:
            bot.metrics.serve(config.metrics.host, config.metrics.port)
        adapters = build_adapters(config, bot)
        if not adapters:
            print(
                "botkit: no adapter to run: enable [telegram], or [console] on a terminal",
                file=sys.stderr,
            )
            return 1
        await run_adapters(bot, adapters, notifier)
    finally:
        await bot.close()
    return 0


async def _db_upgrade(config: Config) -> int:
    engine = create_engine(config.storage.url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    print(f"database {redact_url(config.storage.url)} is up to date")
    return 0


async def _check(config: Config, base_dir: Path) -> int:
    problems: list[str] = []
    engine = create_engine(config.storage.url)
    try:
        await ensure_migrated(engine, auto_migrate_new=False)
        print(f"storage: {redact_url(config.storage.url)} OK")
    except NotMigrated as exc:
        problems.append(f"storage: {exc}")
    finally:
        await engine.dispose()
    bot = build_bot(config, base_dir=base_dir)
    for name, backend in bot.backends.items():
        try:
            if (missing := _not_downloaded(config.backends[name])) is not None:
                print(f"backend {name}: {missing}")
                continue
            await backend.start()
            info = await backend.info()
            facts = "".join(f", {k}: {v}" for k, v in info.extra.items())
            print(
                f"backend {name}: {info.kind} model {info.model_name} present, "
                f"{info.context_length}-token window{facts} OK"
            )
        except BackendError as exc:
            problems.append(f"backend {name}: {exc}")
        finally:
            await backend.close()
    problems += await _check_mcp(config)
    problems += _check_tokens(config)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


async def _check_mcp(config: Config) -> list[str]:
    """Each MCP server: started (or reached), initialized and its tools listed, all at once,
    each within its startup_timeout."""
    from botkit.tools.mcp import probe

    servers = config.mcp.servers
    outcomes = await asyncio.gather(*(probe(name, server) for name, server in servers.items()))
    problems = []
    for name, (ok, line) in zip(servers, outcomes, strict=True):
        if ok:
            print(f"mcp {name}: {line}")
        else:
            problems.append(f"mcp {name}: {line}")
    return problems


def _not_downloaded(backend: BackendConfig) -> str | None:
    """For a Hub model not in the cache, what `check` says instead of downloading it."""
    from botkit.models.hub import HubSettings, find_local

    spec = backend.hub_model if isinstance(backend, LlamaCppConfig) else None
    if spec is None:
        return None
    cache_dir = HubSettings.from_env().cache_dir
    if find_local(spec, cache_dir) is not None:
        return None
    return (
        f"model {spec} is not downloaded yet (not in {cache_dir}); `botkit models pull {spec}` "
        "or the first start will fetch it"
    )


# Formats only: the platforms cannot be reached from every machine that runs `botkit check`.
_TOKEN_FORMATS = {
    "telegram": re.compile(r"^\d{5,}:[A-Za-z0-9_-]{30,}$"),
    "discord": re.compile(r"^[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$"),
}


def _check_tokens(config: Config) -> list[str]:
    """Each enabled platform's token: present, and shaped like one (never printed)."""
    problems = []
    for platform, section in (("telegram", config.telegram), ("discord", config.discord)):
        if not section.enabled:
            continue
        token = read_secret(section.token_env, section.credential)
        if token is None:
            problems.append(
                f"{platform}: no token in ${section.token_env} nor in the systemd credential "
                f"{section.credential!r}"
            )
        elif not _TOKEN_FORMATS[platform].match(token):
            problems.append(f"{platform}: the token does not look like a {platform} bot token")
        else:
            print(f"{platform}: token present and well-formed OK")
    return problems


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", type=Path, help="config file (default: ./config.toml if present)"
        )
        return p

    init = sub.add_parser("init", help="write a commented config.toml")
    init.add_argument("--path", type=Path, default=DEFAULT_CONFIG)
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    chat = with_config(sub.add_parser("chat", help="chat in this terminal"))
    chat.add_argument("--chat", default="console", help="conversation name (default: console)")
    with_config(sub.add_parser("run", help="run every enabled adapter"))
    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    with_config(db_sub.add_parser("upgrade", help="apply Alembic migrations"))
    check_help = "validate the config and probe storage, backends and MCP servers"
    with_config(sub.add_parser("check", help=check_help))
    add_models_parser(sub, with_config)
    add_docs_parser(sub, with_config)
    bench = sub.add_parser("bench", help="run the benchmarks (from a source checkout)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed to python -m bench")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `botkit` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Everything after "bench" is python -m bench's, options too (argparse would take
        # "--json" as its own and refuse it).
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "init":
        if args.path.exists() and not args.force:
            print(f"{args.path} exists; use --force to overwrite it", file=sys.stderr)
            return 1
        args.path.write_text(example_config_text(), encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    try:
        config, base_dir = _load(args)
        if args.command == "chat":
            return asyncio.run(_chat(config, base_dir, args.chat))
        if args.command == "run":
            return asyncio.run(_run(config, base_dir))
        if args.command == "models":
            return run_models(args, config)
        if args.command == "docs":
            return run_docs(args, config)
        if args.command == "db":
            return asyncio.run(_db_upgrade(config))
        return asyncio.run(_check(config, base_dir))
    except BackendUnreachable as exc:  # transient: exit status 1, so systemd tries again
        print(f"botkit: {redact(str(exc))}", file=sys.stderr)
        return 1
    except (ConfigError, NotMigrated, BackendError, AdapterError, LeaseTaken) as exc:
        print(f"botkit: {redact(str(exc))}", file=sys.stderr)
        return 2
    except AdapterFailed as exc:
        print(f"botkit: an adapter failed, stopping: {redact(str(exc))}", file=sys.stderr)
        return 1
    except LeaseLost as exc:
        print(f"botkit: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
