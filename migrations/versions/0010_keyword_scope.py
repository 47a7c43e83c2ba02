"""The keyword index knows each chunk's scope, so a search reads only its chat's matches.

0009's index held the text alone: a search found and ranked every chunk of the database with
one of the words, then kept those of the chat (~120 ms at 100k chunks). Each chunk now also
carries one scope token: `m<chat id>` for a chat's message, `d<chat id>` for its document,
`d0` for a document of every chat. A search asks for the token AND the words, and the index
intersects the two lists (FTS5 and GIN alike), so it reads and ranks the chat's matches only.

- SQLite: chunks_fts gets a second column, scope (contentless now: its values are no
  column of chunks, and the triggers give them; bm25 weighs the column 0). The table is
  rebuilt from chunks.
- PostgreSQL: the generated tsv column adds the token as a lexeme (`@m5`) that no text can
  produce (the 'simple' parser splits at `@`), so a chunk saying "m5" is no scope.

SQLite runs the DDL here outside a transaction (Python's sqlite3 opens one only before a
data statement), so a process killed half-way leaves some of these steps done at 0009: every
step tolerates the state a previous, interrupted run left, and a rerun completes it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def _scope(row: str = "") -> str:
    """The scope token of a chunk row in SQL (row: `new.`, `old.` or none). CAST, not
    `'m' || chat_id`: PostgreSQL's text || integer is not immutable, as a generated column
    needs."""
    return (
        f"CASE WHEN {row}message_id IS NOT NULL THEN 'm' || CAST({row}chat_id AS TEXT) "
        f"WHEN {row}document_id IS NOT NULL THEN 'd' || CAST(coalesce({row}chat_id, 0) AS TEXT) "
        "ELSE '' END"
    )


_TRIGGERS = ["chunks_fts_insert", "chunks_fts_delete", "chunks_fts_update"]
_DROP = [f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS] + [
    "DROP TABLE IF EXISTS chunks_fts"
]
_TOKENIZER = "tokenize='unicode61 remove_diacritics 2'"

_SQLITE_UP = [
    *_DROP,
    f"CREATE VIRTUAL TABLE chunks_fts USING fts5(text, scope, content='', {_TOKENIZER})",
    f"INSERT INTO chunks_fts(rowid, text, scope) SELECT id, text, {_scope()} FROM chunks",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
    f"INSERT INTO chunks_fts(rowid, text, scope) VALUES (new.id, new.text, {_scope('new.')}); "
    "END",
    "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text, scope) "
    f"VALUES ('delete', old.id, old.text, {_scope('old.')}); END",
    "CREATE TRIGGER chunks_fts_update "
    "AFTER UPDATE OF text, chat_id, message_id, document_id ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text, scope) "
    f"VALUES ('delete', old.id, old.text, {_scope('old.')}); "
    f"INSERT INTO chunks_fts(rowid, text, scope) VALUES (new.id, new.text, {_scope('new.')}); "
    "END",
]

# 0009's, as it made them (downgrade).
_SQLITE_DOWN = [
    *_DROP,
    f"CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', "
    f"{_TOKENIZER})",
    "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
]


def _postgres(tsv: str) -> list[str]:
    """Replace chunks.tsv and its GIN index (PostgreSQL's DDL is transactional)."""
    return [
        "DROP INDEX IF EXISTS chunks_fts_tsv",
        "ALTER TABLE chunks DROP COLUMN IF EXISTS tsv",
        f"ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS ({tsv}) STORED",
        "CREATE INDEX chunks_fts_tsv ON chunks USING gin (tsv)",
    ]


_POSTGRES_UP = _postgres(
    f"to_tsvector('simple', text) || array_to_tsvector(ARRAY['@' || {_scope()}])"
)
_POSTGRES_DOWN = _postgres("to_tsvector('simple', text)")


def upgrade() -> None:
    """Add the scope to the keyword index, rebuilding it from the chunks."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in _SQLITE_UP if sqlite else _POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    """Back to 0009's index of the text alone, rebuilt from the chunks."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in _SQLITE_DOWN if sqlite else _POSTGRES_DOWN:
        op.execute(statement)
