"""A reply's figures for /stats: messages.stats, a JSON object (token counts, cache reuse,
prefill time, time to first token, tokens/s, whether the chat's KV state was restored).

Kept with the reply, so /stats still shows the last reply after a restart; NULL for user
messages and for replies stored before this revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add messages.stats."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("stats", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop it (the figures of past replies are lost; the replies stay)."""
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("stats")
