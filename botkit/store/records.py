"""What the store hands out and takes in: a chat, a message read back, a message to store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botkit.backends.base import Role
from botkit.core.events import ChatKey
from botkit.store.models import MessageStatus

__all__ = ["ChatRecord", "NewMessage", "StoredMessage"]


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """A chat as the core sees it: its id, key, setting overrides and trimming position."""

    id: int
    key: ChatKey
    overrides: dict[str, Any]
    window_start_id: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message read back from the store."""

    id: int
    role: Role
    author: str | None
    content: str
    token_count: int
    tokenizer_id: str
    status: MessageStatus
    seed: int | None
    tool: dict[str, Any] | None = None  # a tool round's calls or result (models.MessageRow.tool)
    images: tuple[int, ...] = ()  # the pictures a user message carries (images.id, in order)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message about to be stored."""

    role: Role
    author: str | None
    content: str
    token_count: int
    tokenizer_id: str
    status: MessageStatus
    seed: int | None = None
    stats: dict[str, Any] | None = None  # a reply's figures for /stats
    tool: dict[str, Any] | None = None  # a tool round's calls or result (models.MessageRow.tool)
    images: tuple[int, ...] = ()  # stored images (images.id) the message carries, in order

    def columns(self) -> dict[str, Any]:
        """The message as messages' column values (a shallow copy: dataclasses.asdict's deep
        copy of stats cost a tenth of a turn in the throughput profile)."""
        return {
            "role": self.role, "author": self.author, "content": self.content,
            "token_count": self.token_count, "tokenizer_id": self.tokenizer_id,
            "status": self.status, "seed": self.seed, "stats": self.stats, "tool": self.tool,
            "images": list(self.images) if self.images else None,
        }  # fmt: skip

    def stored(self, row_id: int) -> StoredMessage:
        """This message as it reads back once stored as row row_id."""
        return StoredMessage(
            row_id, self.role, self.author, self.content, self.token_count, self.tokenizer_id,
            self.status, self.seed, self.tool, self.images,
        )  # fmt: skip
