"""The configuration file (TOML) as pydantic models, with environment overrides.

Every key is validated at start-up. Secrets never live in the file: adapters and backends read
their tokens from the environment or from systemd credentials.

A package so that each kind of section has its own module (`backends`, `platforms`, `runtime`,
and `root` for `Config` and loading); the names are re-exported here because
`from botkit.config import X` is how the rest of botkit, the tests and the benchmarks use them.
"""

from __future__ import annotations

from botkit.config.backends import BackendConfig, LlamaCppConfig, OllamaConfig, OpenAIConfig
from botkit.config.embedders import EmbedderConfig
from botkit.config.mcp import McpConfig, McpServerConfig
from botkit.config.platforms import ConsoleConfig, DiscordConfig, TelegramConfig
from botkit.config.retrieval import KnowledgeConfig, MemoryConfig, RetrievalConfig
from botkit.config.root import Config, ConfigError, load_config
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

__all__ = [
    "BackendConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "DefaultsConfig",
    "DiscordConfig",
    "EmbedderConfig",
    "HistoryConfig",
    "KnowledgeConfig",
    "LlamaCppConfig",
    "LoggingConfig",
    "McpConfig",
    "McpServerConfig",
    "MemoryConfig",
    "MetricsConfig",
    "OllamaConfig",
    "OpenAIConfig",
    "PluginsConfig",
    "RetrievalConfig",
    "ServiceConfig",
    "StorageConfig",
    "TelegramConfig",
    "ToolsConfig",
    "VisionConfig",
    "load_config",
]
