"""messages.token_model is messages.tokenizer_id: one name for the id of the tokenizer that
counted a message's tokens, as Backend.tokenizer_id calls it (docs/architecture.md's glossary).

A rename in place (ALTER TABLE … RENAME COLUMN, SQLite 3.25 and PostgreSQL alike): no row is
copied, the indexes stay.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Rename messages.token_model to tokenizer_id."""
    op.alter_column("messages", "token_model", new_column_name="tokenizer_id")


def downgrade() -> None:
    """Rename it back."""
    op.alter_column("messages", "tokenizer_id", new_column_name="token_model")
