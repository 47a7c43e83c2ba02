"""The composition root: builds a Bot from a config, with its backends and commands.

The only place that knows every concrete part: which backend class serves a [backends.NAME]
section, and which plugins are registered (botkit's own, then the configured ones). The core
imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from botkit.backends.base import Backend
from botkit.config import BackendConfig, Config, OllamaConfig, OpenAIConfig
from botkit.core.app import Bot
from botkit.plugins.builtin import plugin as builtin
from botkit.plugins.explain import plugin as explain
from botkit.plugins.fewshot import plugin as fewshot
from botkit.plugins.knowledge import plugin as knowledge
from botkit.plugins.loader import load_plugins
from botkit.plugins.pictures import plugin as pictures
from botkit.plugins.tools import plugin as tools
from botkit.retrieval.embedder import Embedder
from botkit.retrieval.embedders import make_embedder
from botkit.tools.mcp import McpTools

__all__ = ["build_backend", "build_bot"]


def build_backend(name: str, config: BackendConfig) -> Backend:
    """The backend object for one [backends.NAME] section."""
    if isinstance(config, OllamaConfig):
        from botkit.backends.ollama import OllamaBackend

        return OllamaBackend(name, config)
    if isinstance(config, OpenAIConfig):
        from botkit.backends.openai_api import OpenAIBackend

        return OpenAIBackend(name, config)
    from botkit.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(name, config)


def build_bot(
    config: Config,
    *,
    backends: dict[str, Backend] | None = None,
    base_dir: Path | None = None,
    embedder: Embedder | None = None,
) -> Bot:
    """A Bot (not started) with a backend per [backends.NAME] (unless given), the built-in
    commands and the plugins the config enables; plugins that fail are in bot.plugin_errors.
    embedder: retrieval's, instead of the one [embedder] describes."""
    if backends is None:
        backends = {name: build_backend(name, cfg) for name, cfg in config.backends.items()}
    if embedder is None and config.retrieval.vectors:
        embedder = make_embedder(config.embedder)
    mcp = McpTools(config.mcp.servers) if config.mcp.servers else None
    bot = Bot(config, backends=backends, base_dir=base_dir, embedder=embedder, mcp=mcp)
    bot.registry.add_plugin(builtin)
    bot.registry.add_plugin(explain)
    bot.registry.add_plugin(fewshot)
    bot.registry.add_plugin(knowledge)
    bot.registry.add_plugin(tools)
    bot.registry.add_plugin(pictures)
    folders = [p if p.is_absolute() else bot.base_dir / p for p in config.plugins.paths]
    bot.plugin_errors = load_plugins(bot.registry, config.plugins.enabled, folders)
    return bot
