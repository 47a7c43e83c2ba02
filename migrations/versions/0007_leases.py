"""Process leases, cut replies waiting for their platform mark, plugin data per chat.

- leases: each running botkit process's heartbeat, in the database's time. messages.owner now
  holds the writing process's lease id; a reply whose owner has no live lease was cut, and any
  process marks it interrupted. Replies left generating by an older botkit carry its instance
  name, which is no lease: the first start after the upgrade marks them.
- cut_marks: such replies whose platform message still lacks the interrupted mark, for the
  adapter of their bot.
- ix_messages_generating: the replies in flight, by owner (what recovery reads).
- plugin_data: keyed by chat too (chat_id, 0 for the plugin's own space) with each value's
  size, for the per-plugin, per-chat quota. Values stored before go to the plugin's own space.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_GENERATING = "status = 'generating'"


def _plugin_data(name: str, *, per_chat: bool) -> sa.Table:
    """plugin_data as of 0006 (per_chat False) or of this revision, under name."""
    columns: list[sa.Column[object]] = [
        sa.Column("plugin", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]
    if per_chat:
        columns += [
            sa.Column("chat_id", sa.Integer(), nullable=False),
            sa.Column("size", sa.Integer(), nullable=False),
        ]
        key = sa.PrimaryKeyConstraint("plugin", "chat_id", "key", name="pk_plugin_data")
    else:
        key = sa.PrimaryKeyConstraint("plugin", "key")
    return sa.Table(name, sa.MetaData(), *columns, key)


def _copy_plugin_data(*, to_per_chat: bool) -> None:
    """Rebuild plugin_data in the other shape (a primary key cannot be altered on SQLite),
    copying the values that the other shape can hold."""
    old = _plugin_data("plugin_data", per_chat=not to_per_chat)
    new = _plugin_data("plugin_data_new", per_chat=to_per_chat)
    new.create(op.get_bind())
    bind = op.get_bind()
    query = sa.select(old.c.plugin, old.c.key, old.c.value, old.c.updated_at)
    if not to_per_chat:
        query = query.where(old.c.chat_id == 0)  # an older botkit has no per-chat values
    rows = [dict(row) for row in bind.execute(query).mappings()]
    if to_per_chat:
        for row in rows:
            row.update(chat_id=0, size=len(json.dumps(row["value"]).encode()))
    if rows:
        bind.execute(sa.insert(new), rows)
    op.drop_table("plugin_data")
    op.rename_table("plugin_data_new", "plugin_data")


def upgrade() -> None:
    """Create leases and cut_marks, index the replies in flight, key plugin_data by chat."""
    op.create_table(
        "leases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("instance", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", sa.Double(), nullable=False),
        sa.Column("heartbeat", sa.Double(), nullable=False),
        sa.Column("beats", sa.Integer(), nullable=False),
        sa.UniqueConstraint("instance", name="uq_leases_instance"),
    )
    op.create_table(
        "cut_marks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "chat_id", sa.Integer(), sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("reply_ref", sa.String(255), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_messages_generating",
        "messages",
        ["owner"],
        sqlite_where=sa.text(_GENERATING),
        postgresql_where=sa.text(_GENERATING),
    )
    _copy_plugin_data(to_per_chat=True)


def downgrade() -> None:
    """Back to 0006: plugin values stored per chat are dropped (0006 has no place for them);
    replies in flight lose their lease id, so the older botkit marks them at its next start."""
    _copy_plugin_data(to_per_chat=False)
    op.drop_index("ix_messages_generating", table_name="messages")
    messages = sa.table("messages", sa.column("status", sa.String()), sa.column("owner"))
    op.get_bind().execute(
        sa.update(messages).where(messages.c.status == "generating").values(owner=None)
    )
    op.drop_table("cut_marks")
    op.drop_table("leases")
