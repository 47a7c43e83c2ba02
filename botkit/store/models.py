"""The database tables: chats (with their setting overrides), messages (with token counts),
the images users sent (content-addressed) and their links to messages, the processes' leases,
the cut replies waiting for their platform mark, plugin data, and retrieval's documents and
chunks (with their keyword index, built by the migration)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "CHATS",
    "CHUNKS",
    "CUT_MARKS",
    "DOCUMENTS",
    "IMAGES",
    "LEASES",
    "MESSAGES",
    "MESSAGE_IMAGES",
    "PLUGIN_DATA",
    "Base",
    "ChatRow",
    "ChunkRow",
    "CutMarkRow",
    "DocumentRow",
    "ImageRow",
    "LeaseRow",
    "MessageImageRow",
    "MessageRow",
    "MessageStatus",
    "PluginDataRow",
    "included_in_schema",
    "utc_now",
]


def utc_now() -> datetime:
    """The time now, in UTC (what the created_at and updated_at columns hold)."""
    return datetime.now(UTC)


class MessageStatus(StrEnum):
    """Values of messages.status."""

    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    GENERATING = "generating"  # written when the turn starts; a crash leaves it so
    ALTERNATIVE = "alternative"  # an earlier reply that /retry replaced (not in the history)


# The condition of the partial index of replies being generated, spelt as a constant: neither
# SQLite nor PostgreSQL uses a partial index for a query that compares with a parameter.
_GENERATING_ONLY = "status = 'generating'"


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now
    )


class MessageRow(Base):
    """One stored message, with its token count and the tokenizer that counted it."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_chat_id_id", "chat_id", "id"),
        # The replies in flight, by owner: what recovery reads at each heartbeat (a handful of
        # rows, however long the history).
        Index(
            "ix_messages_generating",
            "owner",
            sqlite_where=text(_GENERATING_ONLY),
            postgresql_where=text(_GENERATING_ONLY),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)
    tokenizer_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.COMPLETE)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    # The platform's handle of the reply's message, to mark it interrupted after a crash.
    reply_ref: Mapped[str | None] = mapped_column(String(255))
    # Set on a regenerated reply's row while it is generated, and on the alternative it left.
    replaces: Mapped[int | None] = mapped_column(Integer)
    # A reply's figures for /stats (botkit.backends.base.Usage as JSON, with the backend).
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The lease (leases.id) of the process that writes a reply while it is generated: a reply
    # whose owner holds no live lease was cut, and any process marks it interrupted; one of a
    # live process is never touched. NULL, or a name from before leases: no live owner.
    owner: Mapped[str | None] = mapped_column(String(255))
    # A tool round (migration 0011): on an assistant row that called tools, the calls
    # ({"calls": [{"id", "name", "arguments"}]}); on a tool row, the call it answers
    # ({"call_id", "name", "error"}). NULL on every other message.
    tool: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # The ids (images.id) of the pictures a user message carries, in order (migration 0012):
    # read with the window at no extra cost. message_images holds the same links for the
    # database's integrity (no message points at a missing image) and for clearing them.
    # NULL on every message without images.
    images: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True))


class ImageRow(Base):
    """A picture a user sent, as botkit re-encoded it (botkit.images.decode), stored once
    however many messages carry it (sha256 of data is unique)."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("sha256", name="uq_images_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64))
    mime: Mapped[str] = mapped_column(String(16))  # image/png or image/jpeg
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)  # bytes of data
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # What [vision] backend said the picture shows, for a chat model that cannot see (asked
    # once per picture), and that backend's name. NULL: not described yet.
    description: Mapped[str | None] = mapped_column(Text)
    described_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class MessageImageRow(Base):
    """A message's picture at its place in the message: deleted with the message, and an
    image no link names any more is deleted with the chat's history (/reset)."""

    __tablename__ = "message_images"
    __table_args__ = (
        PrimaryKeyConstraint("message_id", "position", name="pk_message_images"),
        # Whether any message still carries an image: what clearing a chat asks of each.
        Index("ix_message_images_image_id", "image_id"),
    )

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))


class LeaseRow(Base):
    """A running botkit process: its heartbeat, renewed in the database's own time.

    Times are seconds since 1970 on the database's clock (PostgreSQL's now(); SQLite's, which
    is the clock of the one machine holding the file), never a process's own: processes on
    machines whose clocks differ still agree on how old a heartbeat is.
    """

    __tablename__ = "leases"
    __table_args__ = (UniqueConstraint("instance", name="uq_leases_instance"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random; messages.owner
    # [service] instance: one live process per name. NULL: unnamed (library use, tests).
    instance: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))  # where it runs, for the messages
    pid: Mapped[int] = mapped_column(Integer)
    started: Mapped[float] = mapped_column(Double)
    heartbeat: Mapped[float] = mapped_column(Double)
    beats: Mapped[int] = mapped_column(Integer)  # renewals so far: a change shows it is alive


class CutMarkRow(Base):
    """A reply that recovery marked interrupted whose platform message does not say so yet:
    the adapter of the chat's bot (only it can edit that message) marks it, then deletes this."""

    __tablename__ = "cut_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    reply_ref: Mapped[str] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)


class PluginDataRow(Base):
    """One value a plugin stored (a plugin's key-value store), under the name botkit loaded
    the plugin by, in one chat or in the plugin's own space."""

    __tablename__ = "plugin_data"
    __table_args__ = (PrimaryKeyConstraint("plugin", "chat_id", "key", name="pk_plugin_data"),)

    plugin: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[int] = mapped_column(Integer)  # chats.id; 0: the plugin's own, no chat's
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[Any] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(Integer)  # bytes of the value's JSON, for the quota
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now
    )


class DocumentRow(Base):
    """A document a chat was given (/docs add), or every chat of the bot (chat_id NULL,
    `botkit docs add --all`): its text lives in its chunks."""

    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_chat_id", "chat_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(255))  # the file's name
    kind: Mapped[str] = mapped_column(String(8))  # txt, md, pdf, html
    size: Mapped[int] = mapped_column(Integer)  # bytes of the file
    pages: Mapped[int | None] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(Integer)  # by the embedder's tokenizer (chunk sizing)
    sha256: Mapped[str] = mapped_column(String(64))  # the same file twice is refused
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ChunkRow(Base):
    """A piece of text retrieval can bring back: a stored message (memory) or a part of a
    document (knowledge), with its vector once embedded.

    The keyword index is kept beside it by the migrations, per database: an FTS5 table
    (chunks_fts) on SQLite, a generated tsvector column (tsv) with a GIN index on PostgreSQL;
    both hold each chunk's scope token too (0010), which a search ANDs with its words.
    """

    __tablename__ = "chunks"
    __table_args__ = (
        Index("ix_chunks_chat_id_id", "chat_id", "id"),
        Index("ix_chunks_message_id", "message_id", unique=True),  # a message is one chunk
        Index("ix_chunks_document_id", "document_id", "seq"),
        Index("ix_chunks_embedder", "embedder", "id"),
        # A scope's embedded chunks, read from the index alone: the check that a cached matrix
        # is current (count and newest id) runs before every vector search.
        Index("ix_chunks_scope", "chat_id", "embedder", "message_id", "document_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # NULL: a document for every chat of the bot.
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, default=0)  # the chunk's place in its document
    page: Mapped[int | None] = mapped_column(Integer)
    author: Mapped[str | None] = mapped_column(String(255))  # a message's speaker
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)  # by the embedder's tokenizer
    # Embedder.name of the vector; NULL: not embedded yet. Another name: re-embedded.
    embedder: Mapped[str | None] = mapped_column(String(255))
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32, unit length
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


def included_in_schema(name: str | None, kind: str, _parents: object) -> bool:
    """For Alembic's comparison of models and database: the keyword index (SQLite's FTS5
    tables, PostgreSQL's tsv column and its index chunks_fts_tsv) is the migration's."""
    if name is not None and name.startswith("chunks_fts"):
        return False
    return not (kind == "column" and name == "tsv")


# The tables as SQLAlchemy Core's Table objects: the store's queries are Core (rows, not ORM
# objects).
CHATS = Base.metadata.tables[ChatRow.__tablename__]
MESSAGES = Base.metadata.tables[MessageRow.__tablename__]
LEASES = Base.metadata.tables[LeaseRow.__tablename__]
CUT_MARKS = Base.metadata.tables[CutMarkRow.__tablename__]
PLUGIN_DATA = Base.metadata.tables[PluginDataRow.__tablename__]
DOCUMENTS = Base.metadata.tables[DocumentRow.__tablename__]
CHUNKS = Base.metadata.tables[ChunkRow.__tablename__]
IMAGES = Base.metadata.tables[ImageRow.__tablename__]
MESSAGE_IMAGES = Base.metadata.tables[MessageImageRow.__tablename__]
