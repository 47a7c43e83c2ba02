"""Retrieval: documents, chunks (stored messages and document parts, with vectors) and the
keyword index over chunks.

The keyword index is the database's own full-text search: on SQLite an FTS5 table with the
chunks' text as external content, kept by triggers (which fire on ON DELETE CASCADE too, so a
/reset or a removed document leaves no index entry behind); on PostgreSQL a generated tsvector
column with a GIN index. Both tokenise without stemming ('simple' / unicode61), so the two
databases rank the same words alike.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
]

_POSTGRES_FTS = [
    "ALTER TABLE chunks ADD COLUMN tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
    "CREATE INDEX chunks_fts_tsv ON chunks USING gin (tsv)",
]


def upgrade() -> None:
    """Create documents and chunks, and the keyword index."""
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("chat_id", sa.Integer(), sa.ForeignKey("chats.id", ondelete="CASCADE")),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer()),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_documents_chat_id", "documents", ["chat_id"])
    op.create_table(
        "chunks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("chat_id", sa.Integer(), sa.ForeignKey("chats.id", ondelete="CASCADE")),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id", ondelete="CASCADE")),
        sa.Column("document_id", sa.Integer(), sa.ForeignKey("documents.id", ondelete="CASCADE")),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer()),
        sa.Column("author", sa.String(255)),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("embedder", sa.String(255)),
        sa.Column("vector", sa.LargeBinary()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_chunks_chat_id_id", "chunks", ["chat_id", "id"])
    op.create_index("ix_chunks_message_id", "chunks", ["message_id"], unique=True)
    op.create_index("ix_chunks_document_id", "chunks", ["document_id", "seq"])
    op.create_index("ix_chunks_embedder", "chunks", ["embedder", "id"])
    op.create_index(
        "ix_chunks_scope", "chunks", ["chat_id", "embedder", "message_id", "document_id", "id"]
    )
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_FTS if dialect == "sqlite" else _POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    """Drop them (documents and recalled memory are forgotten; messages stay)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE chunks_fts")  # its triggers go with the chunks table
    op.drop_table("chunks")
    op.drop_table("documents")
