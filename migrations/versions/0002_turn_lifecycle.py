"""Durable turns: a reply row is written when its turn starts and checkpointed as it grows.

messages.reply_ref keeps the platform's handle of the reply's message (to mark it interrupted
after a crash); messages.replaces links a regenerated reply (/retry) to the one it replaced,
which stays as an alternative. Status values gain "generating" and "alternative".

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add reply_ref and replaces to messages."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reply_ref", sa.String(255), nullable=True))
        batch.add_column(sa.Column("replaces", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop them (alternatives are deleted: the old schema would show them as history)."""
    op.execute("DELETE FROM messages WHERE replaces IS NOT NULL")
    op.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'generating'")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("replaces")
        batch.drop_column("reply_ref")
