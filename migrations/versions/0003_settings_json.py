"""Per-chat setting overrides as one JSON object instead of a column per setting.

A new sampling option then needs no migration: the object is validated against ChatSettings
(core/settings.py) when written and read. Existing chats keep their values.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

# The setting columns of revisions 0001-0002, with their types.
_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "backend": sa.String(64),
    "persona": sa.Text(),
    "temperature": sa.Float(),
    "top_k": sa.Integer(),
    "top_p": sa.Float(),
    "min_p": sa.Float(),
    "repeat_penalty": sa.Float(),
    "max_tokens": sa.Integer(),
    "seed": sa.BigInteger(),
}


def _chats(*columns: sa.ColumnClause[Any]) -> sa.TableClause:
    return sa.table("chats", sa.column("id", sa.Integer()), *columns)


def upgrade() -> None:
    """Add chats.overrides, move every non-NULL setting into it, drop the setting columns."""
    with op.batch_alter_table("chats") as batch:
        batch.add_column(sa.Column("overrides", sa.JSON(), nullable=True))
    old = _chats(*(sa.column(name, kind) for name, kind in _COLUMNS.items()))
    new = _chats(sa.column("overrides", sa.JSON()))
    bind = op.get_bind()
    for row in bind.execute(sa.select(old)).mappings():
        values = {k: row[k] for k in _COLUMNS if row[k] is not None}
        bind.execute(sa.update(new).where(new.c.id == row["id"]).values(overrides=values))
    with op.batch_alter_table("chats") as batch:
        batch.alter_column("overrides", existing_type=sa.JSON(), nullable=False)
        for name in _COLUMNS:
            batch.drop_column(name)


def downgrade() -> None:
    """Back to a column per setting (options the old schema lacks are dropped)."""
    with op.batch_alter_table("chats") as batch:
        for name, kind in _COLUMNS.items():
            batch.add_column(sa.Column(name, kind, nullable=True))
    new = _chats(sa.column("overrides", sa.JSON()))
    old = _chats(*(sa.column(name, kind) for name, kind in _COLUMNS.items()))
    bind = op.get_bind()
    for row in bind.execute(sa.select(new)).mappings():
        stored = row["overrides"] or {}
        values = {k: stored[k] for k in _COLUMNS if k in stored}
        if values:
            bind.execute(sa.update(old).where(old.c.id == row["id"]).values(**values))
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("overrides")
