"""The whole configuration (`Config`), with environment overrides, and reading it from a file.

Every key is validated here, once, at start-up; the checks that span sections (the default
backend exists, max_tokens fits every backend's window) are on `Config`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from botkit.config.backends import BackendConfig, LlamaCppConfig, OllamaConfig, OpenAIConfig
from botkit.config.embedders import EmbedderConfig, LlamaCppEmbedderConfig
from botkit.config.mcp import McpConfig
from botkit.config.platforms import ConsoleConfig, DiscordConfig, TelegramConfig
from botkit.config.retrieval import KnowledgeConfig, MemoryConfig, RetrievalConfig
from botkit.config.runtime import (
    DefaultsConfig,
    HistoryConfig,
    LoggingConfig,
    MetricsConfig,
    PluginsConfig,
    ServiceConfig,
    StorageConfig,
)
from botkit.config.tools import ToolsConfig
from botkit.config.vision import VisionConfig
from botkit.core.settings import max_reply_tokens

__all__ = ["Config", "ConfigError", "load_config"]


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message says which key and why."""


def _default_backends() -> dict[str, LlamaCppConfig | OllamaConfig | OpenAIConfig]:
    return {"local": LlamaCppConfig()}


class Config(BaseSettings):
    """The whole configuration. Environment variables override the file: BOTKIT_STORAGE__URL=…"""

    model_config = SettingsConfigDict(
        env_prefix="BOTKIT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    storage: StorageConfig = StorageConfig()
    backends: dict[str, BackendConfig] = Field(default_factory=_default_backends)
    defaults: DefaultsConfig = DefaultsConfig()
    history: HistoryConfig = HistoryConfig()
    memory: MemoryConfig = MemoryConfig()
    knowledge: KnowledgeConfig = KnowledgeConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    embedder: EmbedderConfig = LlamaCppEmbedderConfig()
    tools: ToolsConfig = ToolsConfig()
    vision: VisionConfig = VisionConfig()
    plugins: PluginsConfig = PluginsConfig()
    mcp: McpConfig = McpConfig()
    console: ConsoleConfig = ConsoleConfig()
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    service: ServiceConfig = ServiceConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, so a systemd unit can adjust one key.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _check_cross_references(self) -> Config:
        if not self.backends:
            raise ValueError("[backends] must define at least one backend")
        if self.defaults.backend not in self.backends:
            names = ", ".join(sorted(self.backends))
            raise ValueError(
                f"defaults.backend = {self.defaults.backend!r} is not a configured backend "
                f"(configured: {names})"
            )
        for name, backend in self.backends.items():
            window = backend.window_hint
            if self.defaults.max_tokens > max_reply_tokens(window):
                raise ValueError(
                    f"defaults.max_tokens = {self.defaults.max_tokens} leaves too little of "
                    f"the {window}-token context window of backends.{name} for the "
                    f"conversation (keep it below {max_reply_tokens(window) + 1})"
                )
        if self.vision.backend is not None and self.vision.backend not in self.backends:
            names = ", ".join(sorted(self.backends))
            raise ValueError(
                f"vision.backend = {self.vision.backend!r} is not a configured backend "
                f"(configured: {names})"
            )
        return self


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source} is not valid:"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  - {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: Path | None) -> Config:
    """Read and validate a config file; None means built-in defaults (plus the environment)."""
    data: dict[str, Any] = {}
    source = "the built-in configuration"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path} does not exist (create one: botkit init)"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return Config(**data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
