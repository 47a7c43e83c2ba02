"""messages.tool: a tool round's rows. An assistant row that called tools holds the calls
({"calls": [{"id", "name", "arguments"}]}); a tool row holds what its result answers
({"call_id", "name", "error"}). NULL for every other message.

One nullable column, added in place (no row is copied) on SQLite and PostgreSQL alike.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add messages.tool."""
    op.add_column("messages", sa.Column("tool", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop messages.tool (a tool round's rows then read as plain messages)."""
    # ALTER TABLE … DROP COLUMN in place on both (SQLite 3.35+): a batch copy of messages
    # would be refused ("table is locked") beside the keyword index's triggers.
    op.drop_column("messages", "tool")
