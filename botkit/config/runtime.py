"""The sections about the bot itself rather than a backend or a platform: storage, the chat
defaults, history fitting, plugins, service limits and heartbeats, metrics and logging."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from botkit.config.section import Section
from botkit.core.settings import ChatSettings

__all__ = [
    "DEFAULT_DB_URL",
    "DefaultsConfig",
    "HistoryConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PluginsConfig",
    "ServiceConfig",
    "StorageConfig",
]

DEFAULT_DB_URL = "sqlite+aiosqlite:///botkit.db"


class StorageConfig(Section):
    """Where chats and messages are kept."""

    url: str = DEFAULT_DB_URL
    auto_migrate_new: bool = True
    # A growing reply is saved at most this often (one short transaction), so a crash loses
    # at most this many seconds of it.
    checkpoint_interval: float = Field(default=2.0, ge=0.1, le=60)


# Settings every chat starts with; each chat may override them with commands. Declared once,
# in core/settings.py.
DefaultsConfig = ChatSettings


class HistoryConfig(Section):
    """How a conversation is fitted into the context window."""

    trim_to: float = Field(default=0.6, gt=0.0, le=1.0)
    safety_margin_tokens: int = Field(default=8, ge=0, le=1024)


class PluginsConfig(Section):
    """Which plugins to load, and the folders to look for them in."""

    paths: list[Path] = Field(default_factory=lambda: [Path("plugins")])
    # Names of plugin files in paths (NAME.py) or of botkit.plugins entry points; a plugin's
    # data is kept under this name.
    enabled: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list)
    # What each plugin may keep in each chat (and in its own space): values, and bytes of JSON.
    data_max_rows: int = Field(default=1000, ge=1, le=1_000_000)
    data_max_bytes: int = Field(default=1024 * 1024, ge=1, le=1024**3)


class ServiceConfig(Section):
    """Running as a service: limits and shutdown."""

    # Chat messages (generations) a user may send per minute; 0 turns the limit off.
    rate_limit_per_minute: int = Field(default=20, ge=0, le=10_000)
    # Replies that may wait for a model at once; more get "busy, try again".
    max_queue: int = Field(default=32, ge=1, le=10_000)
    # On SIGTERM: seconds in-flight replies may take to finish before they are cut (and stored
    # as interrupted). Keep systemd's TimeoutStopSec above it.
    grace_period: float = Field(default=20.0, ge=0.0, le=600.0)
    # This process's name among botkit processes sharing one database: a second process
    # starting with the name of a live one is refused (exit status 2). `botkit run` and
    # `botkit chat` default it to the host name and the config file's path.
    instance: str | None = Field(default=None, min_length=1, max_length=255)
    # Each process renews a heartbeat in the database every heartbeat_interval seconds. One
    # silent for over heartbeat_timeout seconds (crashed, hung, cut off) is taken as gone: any
    # other process marks its replies in flight interrupted, and its name is free again.
    heartbeat_interval: float = Field(default=5.0, ge=0.05, le=300.0)
    heartbeat_timeout: float = Field(default=15.0, ge=0.15, le=3600.0)

    @model_validator(mode="after")
    def _heartbeat(self) -> ServiceConfig:
        if self.heartbeat_timeout < 2 * self.heartbeat_interval:
            raise ValueError(
                f"service.heartbeat_timeout ({self.heartbeat_timeout:g} s) must be at least "
                f"twice heartbeat_interval ({self.heartbeat_interval:g} s), or one late "
                "heartbeat would make a live process look gone"
            )
        return self


class MetricsConfig(Section):
    """The Prometheus endpoint (off by default)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=1, le=65535)


class LoggingConfig(Section):
    """Log output (always to stderr)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
