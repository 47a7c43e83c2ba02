"""`botkit docs` as a user runs it: add files to a chat (or to every chat), list, remove.

The chat is made by a real `botkit chat` turn; the docs commands then run with a config whose
chat model does not exist, so they pass only if they never load it.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

from tests.integration.test_cli import botkit

NOTES = "# Launch notes\n\nThe launch code is blue-falcon-42. It was chosen in spring.\n"
OTTERS = "Otters hold hands while they sleep, so that they do not drift apart.\n"


@pytest.fixture(scope="module")
def chatted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the chat console:demo, made by one turn of the bundled model."""
    where = tmp_path_factory.mktemp("chatted")
    config = where / "chat.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{where / "bot.db"}"\n'
        "[retrieval]\nvectors = false\n",
        encoding="utf-8",
    )
    result = botkit("chat", "--config", str(config), "--chat", "demo", stdin="Hi\n", cwd=where)
    assert result.returncode == 0, result.stderr
    return where / "bot.db"


def _setup(tmp_path: Path, chatted: Path, *, extra: str = "") -> Path:
    """This test's copy of the database, its files, and a config that cannot load a model."""
    for part in chatted.parent.glob("bot.db*"):
        shutil.copy(part, tmp_path / part.name)
    (tmp_path / "notes.md").write_text(NOTES, encoding="utf-8")
    (tmp_path / "otters.txt").write_text(OTTERS, encoding="utf-8")
    config = tmp_path / "docs.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n'
        '[backends.local]\nkind = "llamacpp"\nmodel_path = "/nonexistent/model.gguf"\n'
        + (extra or "[retrieval]\nvectors = false\n"),
        encoding="utf-8",
    )
    return config


def docs(config: Path, *args: str) -> tuple[int, str, str]:
    result = botkit("docs", *args, "--config", str(config), cwd=config.parent)
    return result.returncode, result.stdout, result.stderr


def test_files_added_to_a_chat_are_listed_with_chunks_and_tokens(
    tmp_path: Path, chatted: Path
) -> None:
    config = _setup(tmp_path, chatted)
    code, out, err = docs(config, "add", "notes.md", "otters.txt", "--chat", "console:demo")
    assert code == 0, err
    assert re.search(r"notes\.md: added as document \d+ \(1 chunks, \d+ tokens\)", out)
    assert re.search(r"otters\.txt: added as document \d+ \(1 chunks, \d+ tokens\)", out)
    code, listed, _ = docs(config, "list", "--chat", "console:demo")
    assert code == 0
    rows = listed.splitlines()
    assert len(rows) == 2
    assert re.search(r"console:demo  notes\.md \(md, \d+ bytes\): 1 chunks, \d+ tokens", rows[0])
    assert re.search(r"console:demo  otters\.txt \(txt, \d+ bytes\): 1 chunks", rows[1])
    code, chats, _ = docs(config, "chats")
    assert "console:demo  (2 documents)" in chats


def test_a_binary_file_is_refused_with_the_reason_and_the_good_one_is_added(
    tmp_path: Path, chatted: Path
) -> None:
    config = _setup(tmp_path, chatted)
    (tmp_path / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50)
    code, out, _ = docs(config, "add", "photo.txt", "notes.md", "missing.md", "--chat",
                        "console:demo")  # fmt: skip
    assert code == 1
    assert (
        "photo.txt: refused: photo.txt is a PNG image, which is not supported; botkit reads "
        ".txt, .md, .pdf and .html files." in out
    )
    assert "missing.md: refused: missing.md is not a file" in out
    assert re.search(r"notes\.md: added as document \d+", out)
    _, listed, _ = docs(config, "list")
    assert "notes.md" in listed
    assert "photo.txt" not in listed
    assert len(listed.splitlines()) == 1


def test_documents_for_every_chat_are_listed_and_removed_by_id(
    tmp_path: Path, chatted: Path
) -> None:
    config = _setup(tmp_path, chatted)
    code, out, err = docs(config, "add", "otters.txt", "--all")
    assert code == 0, err
    found = re.search(r"added as document (\d+)", out)
    assert found is not None
    number = found[1]
    _, of_chat, _ = docs(config, "list", "--chat", "console:demo")
    assert re.search(rf"^\s*{number}  every chat  otters\.txt", of_chat, re.MULTILINE)
    code, removed, _ = docs(config, "remove", number)
    assert code == 0
    assert "otters.txt" in removed
    _, listed, _ = docs(config, "list")
    assert "no documents" in listed
    code, _, err = docs(config, "remove", number)
    assert code == 2
    assert f"there is no document {number}; `botkit docs list` shows the ids" in err


def test_an_unknown_chat_is_refused_with_the_chats_there_are(tmp_path: Path, chatted: Path) -> None:
    config = _setup(tmp_path, chatted)
    code, _, err = docs(config, "add", "notes.md", "--chat", "telegram:12345")
    assert code == 2
    assert "there is no chat telegram:12345 in this database (it has 1: console:demo)" in err
    assert "`botkit docs chats`" in err
    code, _, err = docs(config, "add", "notes.md", "--chat", "demo")
    assert code == 2
    assert "'demo' is not a chat key: a key is PLATFORM:ID" in err
    code, _, err = docs(config, "add", "notes.md")
    assert code == 2
    assert "one of the arguments --chat --all is required" in err
    _, listed, _ = docs(config, "list")
    assert "no documents" in listed  # nothing was stored by the refused commands


def test_added_documents_get_vectors_from_the_default_embedder(
    tmp_path: Path, chatted: Path
) -> None:
    config = _setup(tmp_path, chatted, extra="[retrieval]\nvectors = true\n")
    code, out, err = docs(config, "add", "notes.md", "otters.txt", "--chat", "console:demo")
    assert code == 0, err
    # The two documents' chunks, and the chat's two messages (memory) that were waiting.
    assert re.search(r"embedded 4 chunks with \S*MiniLM", out, re.IGNORECASE), out


def test_an_embedder_that_is_down_leaves_the_documents_on_keywords(
    tmp_path: Path, chatted: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = _setup(
        tmp_path, chatted,
        extra=f'[embedder]\nkind = "ollama"\nhost = "http://127.0.0.1:{port}"\nmodel = "m"\n',
    )  # fmt: skip
    code, out, err = docs(config, "add", "notes.md", "--chat", "console:demo")
    assert code == 0, err
    assert "warning: the embedder did not start" in err
    assert "is not reachable: is Ollama running?" in err
    assert "found by keywords" in err
    assert re.search(r"notes\.md: added as document \d+", out)
    assert "embedded" not in out
