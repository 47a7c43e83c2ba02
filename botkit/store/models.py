"""The database tables: chats (with their setting overrides) and messages (with token counts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "ChatRow", "MessageRow", "MessageStatus", "PluginDataRow"]


def _now() -> datetime:
    return datetime.now(UTC)


class MessageStatus:
    """Values of messages.status."""

    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    GENERATING = "generating"  # written when the turn starts; a crash leaves it so
    ALTERNATIVE = "alternative"  # an earlier reply that /retry replaced (not in the history)


class Base(DeclarativeBase):
    """Declarative base for botkit's tables."""


class ChatRow(Base):
    """One conversation, with the settings it overrides (the rest are the config defaults)."""

    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("platform", "chat_key", name="uq_chats_platform_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_key: Mapped[str] = mapped_column(String(255))
    # {"temperature": 0.3, "persona": "…"}: one JSON object, validated against ChatSettings
    # when written and when read, so a new sampling option needs no migration.
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Messages with a smaller id are no longer sent to the model (trimmed with hysteresis).
    window_start_id: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )


class MessageRow(Base):
    """One stored message, with its token count and the tokenizer that counted it."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_chat_id_id", "chat_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)
    token_model: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.COMPLETE)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # The platform's handle of the reply's message, to mark it interrupted after a crash.
    reply_ref: Mapped[str | None] = mapped_column(String(255))
    # Set on a regenerated reply's row while it is generated, and on the alternative it left.
    replaces: Mapped[int | None] = mapped_column(Integer)
    # A reply's figures for /stats (botkit.backends.base.Usage as JSON, with the backend).
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The botkit process (its [service] instance) that writes a reply while it is generated:
    # after a crash, a process marks only its own cut replies, never those that another
    # process sharing the database is still writing. NULL: any process may (older rows).
    owner: Mapped[str | None] = mapped_column(String(255))


class PluginDataRow(Base):
    """One value a plugin stored under its own name (a plugin's key-value store)."""

    __tablename__ = "plugin_data"

    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )
