"""Persistent storage of chats and messages (SQLAlchemy async; schema owned by Alembic)."""
