"""The sections of the chat platforms: `[console]`, `[telegram]` and `[discord]`.

Tokens are never in these sections: each names the environment variable and the systemd
credential its token is read from.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from botkit.config.section import Section

__all__ = ["ConsoleConfig", "DiscordConfig", "TelegramConfig"]


class ConsoleConfig(Section):
    """The local console adapter."""

    enabled: bool = True
    user_name: str = Field(default="you", min_length=1, max_length=64)


class TelegramConfig(Section):
    """The Telegram adapter (python-telegram-bot, long polling). The token is never here."""

    enabled: bool = False
    token_env: str = "BOTKIT_TELEGRAM_TOKEN"
    credential: str = "telegram_token"
    api_base_url: str = Field(default="https://api.telegram.org/bot", pattern=r"^https?://")
    poll_timeout: int = Field(default=10, ge=1, le=50)
    settings_user_ids: list[int] = Field(default_factory=list)
    allow_chat_ids: list[int] = Field(default_factory=list)
    deny_chat_ids: list[int] = Field(default_factory=list)
    allow_user_ids: list[int] = Field(default_factory=list)
    deny_user_ids: list[int] = Field(default_factory=list)
    dm_edit_interval: float = Field(default=1.0, ge=0.0, le=60.0)
    group_edit_interval: float = Field(default=3.0, ge=0.0, le=60.0)
    max_retries: int = Field(default=5, ge=0, le=20)
    # "polling" (default: works behind NAT) or "webhook" (Telegram calls webhook_url).
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_path: str = Field(default="/telegram", pattern=r"^/")
    webhook_secret_env: str = "BOTKIT_TELEGRAM_WEBHOOK_SECRET"
    webhook_secret_credential: str = "telegram_webhook_secret"

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> TelegramConfig:
        if self.mode == "webhook" and not self.webhook_url:
            raise ValueError("telegram.mode = 'webhook' needs telegram.webhook_url")
        return self


class DiscordConfig(Section):
    """The Discord adapter (discord.py). The token is never here."""

    enabled: bool = False
    token_env: str = "BOTKIT_DISCORD_TOKEN"
    credential: str = "discord_token"
    # Slash commands are synced to these guilds (instant) or, when empty, globally (Discord
    # may take up to an hour to show global changes). Synced only when the set changed.
    guild_ids: list[int] = Field(default_factory=list)
    settings_role_ids: list[int] = Field(default_factory=list)
    settings_user_ids: list[int] = Field(default_factory=list)
    allow_user_ids: list[int] = Field(default_factory=list)
    deny_user_ids: list[int] = Field(default_factory=list)
    allow_role_ids: list[int] = Field(default_factory=list)
    deny_role_ids: list[int] = Field(default_factory=list)
    allow_channel_ids: list[int] = Field(default_factory=list)
    deny_channel_ids: list[int] = Field(default_factory=list)
    edit_interval: float = Field(default=1.0, ge=0.0, le=60.0)
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: list[int] | None = None
    # Seconds an interaction token can be used (Discord: 15 minutes); past it, replies go to
    # the channel as plain messages.
    interaction_lifetime: float = Field(default=870.0, gt=0.0, le=900.0)
    # Seconds to wait for more guilds after the last GUILD_CREATE before on_ready.
    guild_ready_timeout: float = Field(default=2.0, ge=0.0, le=60.0)
    # For a proxy or a local emulator only: the REST base and the gateway URL.
    # The REST prefix with the version, e.g. http://127.0.0.1:8080/api/v10 (discord.py's
    # Route.BASE, which every route is appended to).
    api_base_url: str | None = Field(default=None, pattern=r"^https?://.+/api/v\d+/?$")
    gateway_url: str | None = Field(default=None, pattern=r"^wss?://")

    @model_validator(mode="after")
    def _shards(self) -> DiscordConfig:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("discord.shard_ids needs discord.shard_count")
            bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if bad:
                raise ValueError(f"discord.shard_ids {bad} are outside 0..{self.shard_count - 1}")
        return self
