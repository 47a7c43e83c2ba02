"""The configuration file (TOML) as pydantic models, with environment overrides.

Every key is validated here, once, at start-up. Secrets never live in this file: later adapters
read their tokens from the environment or from systemd credentials.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from botkit.core.settings import ChatSettings
from botkit.models.spec import ModelSpec, parse_model_spec

__all__ = [
    "BackendConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "DefaultsConfig",
    "DiscordConfig",
    "HistoryConfig",
    "LlamaCppConfig",
    "MetricsConfig",
    "OllamaConfig",
    "OpenAIConfig",
    "PluginsConfig",
    "ServiceConfig",
    "StorageConfig",
    "TelegramConfig",
    "load_config",
]

DEFAULT_DB_URL = "sqlite+aiosqlite:///botkit.db"


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message says which key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Section):
    """Where chats and messages are kept."""

    url: str = DEFAULT_DB_URL
    auto_migrate_new: bool = True
    # A growing reply is saved at most this often (one short transaction), so a crash loses
    # at most this many seconds of it.
    checkpoint_interval: float = Field(default=2.0, ge=0.1, le=60)


class LlamaCppConfig(_Section):
    """An in-process llama.cpp model (a GGUF file)."""

    kind: Literal["llamacpp"] = "llamacpp"
    model_path: Path | None = None
    # Instead of model_path: a model on the Hugging Face Hub, "OWNER/REPO:QUANT" or
    # "hf://OWNER/REPO/FILE.gguf", downloaded on the first start (as `botkit models pull`
    # does) and loaded from the cache after that. Neither: the bundled SmolLM2-135M.
    model: str | None = None
    n_ctx: int = Field(default=2048, ge=256, le=131072)
    # Threads for replies and prompts alike; None: llama_slots.llama_threads chooses.
    n_threads: int | None = Field(default=None, ge=1, le=512)
    n_batch: int = Field(default=512, ge=16, le=8192)
    state_cache_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    # Chats generated at once from one batched context (continuous batching). 1: one reply at
    # a time. Each slot holds a full n_ctx of KV cache, so memory grows with it (/model shows
    # it); on a CPU the gain is 1.4-1.8x at 8 chats, more on a GPU. "auto": see
    # backends/llamacpp.py choose_slots (cores, the model's KV size, free memory, n_batch).
    parallel: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    # A LoRA adapter (GGUF, from llama.cpp's convert_lora_to_gguf.py) applied on top of the
    # model, and how strongly: W + lora_scale × (alpha / rank) × BA. 0 turns it off.
    lora_path: Path | None = None
    lora_scale: float = Field(default=1.0, ge=0.0, le=4.0, allow_inf_nan=False)
    # Seconds a reply may wait for its next piece from llama.cpp (a prompt being read counts):
    # past it the reply is ended as interrupted with a clear message, not waited on for ever.
    stall_timeout: float = Field(default=300.0, gt=0, le=86400, allow_inf_nan=False)

    @field_validator("model")
    @classmethod
    def _model_spec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return str(parse_model_spec(value))  # ValueError: what is wrong, and the forms

    @property
    def hub_model(self) -> ModelSpec | None:
        """The Hub model to resolve at start, if `model` is set."""
        return parse_model_spec(self.model) if self.model else None

    @model_validator(mode="after")
    def _one_model(self) -> LlamaCppConfig:
        if self.model and self.model_path:
            raise ValueError("set model (a Hub model) or model_path (a local GGUF file), not both")
        return self

    @model_validator(mode="after")
    def _batch_holds_every_slot(self) -> LlamaCppConfig:
        # Every step decodes a token of each generating chat: they must fit in one batch.
        if self.parallel != "auto" and self.parallel * 2 > min(self.n_batch, self.n_ctx):
            raise ValueError(
                f"parallel = {self.parallel} needs n_batch of at least {self.parallel * 2} "
                "(a token of every chat, and room for prompts)"
            )
        return self

    @property
    def window_hint(self) -> int:
        """The context window as far as the config alone tells."""
        return self.n_ctx


class OllamaConfig(_Section):
    """A model served by an Ollama daemon, local or remote."""

    kind: Literal["ollama"]
    host: str = Field(default="http://127.0.0.1:11434", pattern=r"^https?://")
    model: str = Field(min_length=1, max_length=200)
    # Ollama silently drops the start of a prompt longer than num_ctx, so botkit always sends
    # it: this value, or the model's trained context length (from /api/show) capped by
    # max_num_ctx.
    num_ctx: int | None = Field(default=None, ge=256, le=1_048_576)
    max_num_ctx: int = Field(default=8192, ge=256, le=1_048_576)
    keep_alive: str | int = "5m"
    parallel: int = Field(default=1, ge=1, le=64)
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    read_timeout: float = Field(default=300.0, gt=0, le=3600)

    @property
    def window_hint(self) -> int:
        """The context window as far as the config alone tells."""
        return self.num_ctx or self.max_num_ctx


class OpenAIConfig(_Section):
    """A model behind an OpenAI-compatible server: llama.cpp's llama-server, vLLM, SGLang,
    LM Studio, LocalAI, llama_cpp.server, or a hosted service."""

    kind: Literal["openai"]
    # The API root, with its version: http://127.0.0.1:8080/v1
    base_url: str = Field(pattern=r"^https?://[^\s]+$", max_length=500)
    model: str = Field(min_length=1, max_length=200)
    # The API key comes from this environment variable or the systemd credential of this
    # name, never from this file; local servers usually need none.
    api_key_env: str = Field(default="BOTKIT_OPENAI_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    credential: str = Field(default="openai_api_key", pattern=r"^[A-Za-z0-9_.-]+$")
    # The context length, used when the server does not report one (vLLM's max_model_len,
    # llama-server's n_ctx do); without either, 4096 is assumed and a warning logged.
    n_ctx: int | None = Field(default=None, ge=256, le=1_048_576)
    # top_k, min_p and repeat_penalty are not in the OpenAI API: they are sent in the request
    # body under llama.cpp's and vLLM's names. Set false for a server that refuses unknown
    # fields (OpenAI's own); /settings then marks them as ignored.
    sampling_extensions: bool = True
    parallel: int = Field(default=4, ge=1, le=256)
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    # The longest wait for the next piece of a reply; SSE keep-alive comments do not count.
    read_timeout: float = Field(default=300.0, gt=0, le=3600)
    # The longest a whole reply may take, from the request to its last piece; a reply still
    # streaming then is cut there and stored as interrupted.
    reply_timeout: float = Field(default=600.0, gt=0, le=86400)
    # A busy server (429, 503) is asked again this many times, with the client's backoff
    # (it honours Retry-After), before the chat is told.
    max_retries: int = Field(default=3, ge=0, le=10)

    @property
    def window_hint(self) -> int:
        """The context window as far as the config alone tells."""
        return self.n_ctx or 4096


def _backend_kind(value: Any) -> str:
    # `kind` may be left out for the default, in-process llama.cpp.
    if isinstance(value, dict):
        return str(value.get("kind", "llamacpp"))
    return str(getattr(value, "kind", "llamacpp"))


BackendConfig = Annotated[
    Annotated[LlamaCppConfig, Tag("llamacpp")]
    | Annotated[OllamaConfig, Tag("ollama")]
    | Annotated[OpenAIConfig, Tag("openai")],
    Discriminator(_backend_kind),
]


# Settings every chat starts with; each chat may override them with commands. Declared once,
# in core/settings.py.
DefaultsConfig = ChatSettings


class HistoryConfig(_Section):
    """How a conversation is fitted into the context window."""

    trim_to: float = Field(default=0.6, gt=0.0, le=1.0)
    safety_margin_tokens: int = Field(default=8, ge=0, le=1024)


class PluginsConfig(_Section):
    """Which plugins to load, and the folders to look for them in."""

    paths: list[Path] = Field(default_factory=lambda: [Path("plugins")])
    # Names of plugin files in paths (NAME.py) or of botkit.plugins entry points; a plugin's
    # data is kept under this name.
    enabled: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list)
    # What each plugin may keep in each chat (and in its own space): values, and bytes of JSON.
    data_max_rows: int = Field(default=1000, ge=1, le=1_000_000)
    data_max_bytes: int = Field(default=1024 * 1024, ge=1, le=1024**3)


class ConsoleConfig(_Section):
    """The local console adapter."""

    enabled: bool = True
    user_name: str = Field(default="you", min_length=1, max_length=64)


class TelegramConfig(_Section):
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


class DiscordConfig(_Section):
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


class ServiceConfig(_Section):
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


class MetricsConfig(_Section):
    """The Prometheus endpoint (off by default)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=1, le=65535)


class LoggingConfig(_Section):
    """Log output (always to stderr)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"


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
    plugins: PluginsConfig = PluginsConfig()
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
            if self.defaults.max_tokens >= window // 2:
                raise ValueError(
                    f"defaults.max_tokens = {self.defaults.max_tokens} leaves too little of "
                    f"the {window}-token context window of backends.{name} for the "
                    f"conversation (keep it below {window // 2})"
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
