"""`botkit docs add | list | remove | chats`: a bot's documents from the command line.

Only the store and retrieval are opened (the embedder too for `add`), never a chat model. No
lease is taken: a lease guards the replies a process generates, and this one generates none;
each document is stored with its chunks in one transaction of its own, so adding beside a
running bot is safe (SQLite waits for the other writer, busy_timeout). The running bot finds
new documents within 30 s (its has-documents cache and its indexer's period).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from botkit.config import Config
from botkit.core.events import ChatKey
from botkit.retrieval.embedder import EmbedderError
from botkit.retrieval.embedders import make_embedder
from botkit.retrieval.library import DocumentRefused, Library
from botkit.retrieval.service import Retrieval
from botkit.store.db import create_engine, ensure_migrated
from botkit.store.documents import DocumentInfo
from botkit.store.repository import Repository

__all__ = ["add_docs_parser", "run_docs"]

_FIND_KEYS = "`botkit docs chats` lists the chats this database has"


class _Usage(Exception):
    """A chat, key or id that is not there: exit status 2, with what is allowed."""


@dataclass(frozen=True, slots=True)
class _Opened:
    repo: Repository
    retrieval: Retrieval
    library: Library


def add_docs_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """The `docs` command and its subcommands."""
    docs = sub.add_parser("docs", help="add, list and remove the bot's documents")
    docs_sub = docs.add_subparsers(dest="docs_command", required=True)
    add = with_config(docs_sub.add_parser("add", help="read files into a chat's documents"))
    add.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".txt, .md, .pdf, .html")
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--chat", metavar="KEY", help="the chat, PLATFORM:ID (see `docs chats`)")
    scope.add_argument("--all", action="store_true", help="the bot's documents, for every chat")
    listing = with_config(docs_sub.add_parser("list", help="documents with chunks and tokens"))
    listing.add_argument("--chat", metavar="KEY", help="one chat's (and the bot's) only")
    remove = with_config(docs_sub.add_parser("remove", help="forget a document by its id"))
    remove.add_argument("id", type=int, metavar="ID", help="as `docs list` prints it")
    with_config(docs_sub.add_parser("chats", help="the chat keys, with their documents"))


def run_docs(args: argparse.Namespace, config: Config) -> int:
    """Run a docs subcommand: 0 done, 1 a file refused (the others added), 2 bad usage."""
    try:
        if args.docs_command == "add":
            return asyncio.run(_add(config, args.files, None if args.all else args.chat))
        if args.docs_command == "list":
            return asyncio.run(_list(config, args.chat))
        if args.docs_command == "remove":
            return asyncio.run(_remove(config, args.id))
        return asyncio.run(_chats(config))
    except _Usage as exc:
        print(f"botkit: {exc}", file=sys.stderr)
        return 2


@contextlib.asynccontextmanager
async def _open(config: Config, *, embed: bool) -> AsyncIterator[_Opened]:
    engine = create_engine(config.storage.url)
    retrieval: Retrieval | None = None
    repo: Repository | None = None
    try:
        await ensure_migrated(engine, auto_migrate_new=config.storage.auto_migrate_new)
        store = repo = Repository(engine)
        embedder = make_embedder(config.embedder) if embed and config.retrieval.vectors else None
        retrieval = Retrieval(config.memory, config.knowledge, config.retrieval, embedder)
        await retrieval.start(repo, background=False)  # this command drains it itself
        yield _Opened(repo, retrieval, Library(config.knowledge, retrieval, lambda: store))
    finally:
        if retrieval is not None:
            await retrieval.close()
        if repo is not None:
            await repo.close()
        await engine.dispose()


def _parse_key(text: str) -> ChatKey:
    platform, colon, platform_id = text.partition(":")
    if not (colon and platform and platform_id):
        raise _Usage(
            f"{text!r} is not a chat key: a key is PLATFORM:ID, e.g. console:demo or "
            f"telegram:BOT/12345; {_FIND_KEYS}"
        )
    return ChatKey(platform, platform_id)


async def _chat_id(repo: Repository, text: str) -> int:
    key = _parse_key(text)
    chat = await repo.find_chat(key)
    if chat is None:
        keys = list((await repo.chat_keys()).values())
        known = ", ".join(str(k) for k in keys[:10]) + (", …" if len(keys) > 10 else "")
        have = f"it has {len(keys)}: {known}" if keys else "it has none yet"
        raise _Usage(f"there is no chat {key} in this database ({have}); {_FIND_KEYS}")
    return chat.id


def _say(line: str) -> None:
    tqdm.write(line, file=sys.stdout)  # above a bar, if one is drawn


def _load(library: Library, path: Path) -> bytes:
    """The file's bytes, its size checked before they are read into memory."""
    try:
        if not path.is_file():
            raise DocumentRefused(f"{path} is not a file")
        library.check_size(path.name, path.stat().st_size)
        return path.read_bytes()
    except OSError as exc:
        raise DocumentRefused(f"{path} cannot be read: {exc.strerror or exc}") from None


async def _read(library: Library, chat_id: int | None, path: Path) -> DocumentInfo:
    """Add one file; DocumentRefused says why not."""
    data = await asyncio.to_thread(_load, library, path)
    return await library.add(chat_id, path.name, data)


async def _add(config: Config, files: list[Path], chat: str | None) -> int:
    tty = sys.stderr.isatty()
    async with _open(config, embed=True) as opened:
        chat_id = None if chat is None else await _chat_id(opened.repo, chat)
        if opened.retrieval.embedder_failure is not None:
            print(
                f"warning: the embedder did not start ({opened.retrieval.embedder_failure}): "
                "chunks are sized by an estimate and found by keywords until it works",
                file=sys.stderr,
            )
        refused = 0
        bar: tqdm[Any]
        with tqdm(files, desc="reading", unit="file", file=sys.stderr, disable=not tty) as bar:
            for path in bar:
                try:
                    info = await _read(opened.library, chat_id, path)
                except DocumentRefused as exc:
                    refused += 1
                    _say(f"{path}: refused: {exc}")
                else:
                    _say(
                        f"{path}: added as document {info.id} ({info.chunks} chunks, "
                        f"{info.tokens} tokens)"
                    )
        if opened.retrieval.live_embedder is not None and not await _embed(opened.retrieval, tty):
            return 1
    return 1 if refused else 0


async def _embed(retrieval: Retrieval, tty: bool) -> bool:
    """Give the new chunks (and any others waiting) their vectors; False if it failed."""
    assert retrieval.indexer is not None
    assert retrieval.embedder is not None
    embedded = 0
    with tqdm(desc="embedding", unit="chunk", file=sys.stderr, disable=not tty) as bar:

        def progress(done: int, total: int) -> None:
            nonlocal embedded
            embedded = done
            bar.total = total
            bar.update(done - bar.n)

        try:
            await retrieval.indexer.drain(progress)
        except EmbedderError as exc:
            _say(f"embedding stopped: {exc}; the documents are stored and found by keywords, "
                 "and a running bot's indexer retries their vectors")  # fmt: skip
            return False
    _say(f"embedded {embedded} chunks with {retrieval.embedder.name}")
    return True


def _row(info: DocumentInfo, keys: dict[int, ChatKey]) -> str:
    scope = "every chat" if info.chat_id is None else str(keys.get(info.chat_id, info.chat_id))
    pages = f", {info.pages} pages" if info.pages else ""
    return (
        f"{info.id:>5}  {scope}  {info.title} ({info.kind}, {info.size:,} bytes{pages}): "
        f"{info.chunks} chunks, {info.tokens} tokens, added {info.created_at:%Y-%m-%d %H:%M}"
    )


async def _list(config: Config, chat: str | None) -> int:
    async with _open(config, embed=False) as opened:
        repo = opened.repo
        if chat is None:
            documents = await repo.documents.every()
        else:
            documents = await repo.documents.of_chat(await _chat_id(repo, chat))
        keys = await repo.chat_keys()
    if not documents:
        print("no documents (botkit docs add FILE --chat KEY, or --all, adds one)")
    for info in documents:
        print(_row(info, keys))
    return 0


async def _remove(config: Config, document_id: int) -> int:
    async with _open(config, embed=False) as opened:
        repo = opened.repo
        info = await repo.documents.get(document_id)
        if info is None:
            raise _Usage(f"there is no document {document_id}; `botkit docs list` shows the ids")
        await repo.documents.remove(document_id)
        keys = await repo.chat_keys()
    print(f"removed {_row(info, keys).strip()}")
    return 0


async def _chats(config: Config) -> int:
    async with _open(config, embed=False) as opened:
        keys = await opened.repo.chat_keys()
        documents = await opened.repo.documents.every()
    if not keys:
        print("no chats yet: a chat is stored once someone writes to the bot")
    for chat_id, key in keys.items():
        own = sum(1 for d in documents if d.chat_id == chat_id)
        print(f"{key}  ({own} documents)")
    return 0
