"""Images: the pictures users send (images, content-addressed by sha256, with the describing
backend's cached description), their links to the messages that carry them (message_images,
deleted with the message), and messages.images, the same ids in order for reading the window.

New tables and one nullable column added in place: no row is copied.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create images and message_images; add messages.images."""
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mime", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("described_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sha256", name="uq_images_sha256"),
    )
    op.create_table(
        "message_images",
        sa.Column(
            "message_id",
            sa.Integer(),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "position", name="pk_message_images"),
    )
    op.create_index("ix_message_images_image_id", "message_images", ["image_id"])
    op.add_column("messages", sa.Column("images", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop them (the pictures are lost; their messages keep their text)."""
    op.drop_index("ix_message_images_image_id", "message_images")
    op.drop_table("message_images")
    op.drop_table("images")
    # In place on both (SQLite 3.35+), as 0011's downgrade.
    op.drop_column("messages", "images")
