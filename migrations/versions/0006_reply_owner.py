"""The process writing a reply: messages.owner, the [service] instance that wrote the row ahead.

After a crash, the next start marks the replies left generating as interrupted; with several
processes on one database, each now marks only its own (the others' may still be generating).
NULL for user messages and for rows written before this revision (any process marks those).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add messages.owner."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))


def downgrade() -> None:
    """Drop it (recovery after a crash then marks every process's generating replies)."""
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("owner")
