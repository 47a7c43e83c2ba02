"""Loading plugins by name: from the configured folders, then from installed entry points.

A plugin that fails to import is reported by name and skipped; the bot still starts. A loaded
plugin goes by the name it was loaded as (the file's or the entry point's, as enabled in the
config), whatever name it gives itself: its commands' tag in /help and the space of its data
are that name's, so two plugins calling themselves the same cannot read each other's data.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from importlib import metadata
from pathlib import Path
from types import ModuleType

from botkit.core.commands import CommandRegistry, Plugin

__all__ = ["ENTRY_POINT_GROUP", "load_plugins"]

ENTRY_POINT_GROUP = "botkit.plugins"

log = logging.getLogger(__name__)


def _plugin_of(obj: object, name: str) -> Plugin:
    plugin = obj if isinstance(obj, Plugin) else getattr(obj, "plugin", None)
    if not isinstance(plugin, Plugin):
        raise TypeError(f"{name} defines no `plugin = Plugin(...)`")
    return plugin


def _from_file(name: str, path: Path) -> Plugin:
    spec = importlib.util.spec_from_file_location(f"botkit_plugin_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _plugin_of(module, str(path))


def _find(name: str, folders: list[Path]) -> Plugin:
    for folder in folders:
        for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
            if candidate.is_file():
                return _from_file(name, candidate)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            return _plugin_of(entry.load(), f"entry point {entry.value}")
    where = ", ".join(str(f) for f in folders) or "no folders"
    raise LookupError(f"not found in {where} nor in the {ENTRY_POINT_GROUP!r} entry points")


def load_plugins(registry: CommandRegistry, names: list[str], folders: list[Path]) -> list[str]:
    """Load each named plugin into registry; returns one message per plugin that failed."""
    errors: list[str] = []
    for name in names:
        try:
            found = _find(name, folders)
            commands = [dataclasses.replace(c, plugin=name) for c in found.commands]
            registry.add_plugin(dataclasses.replace(found, name=name, commands=commands))
        except Exception as exc:  # any error in a plugin's import must not stop the bot
            message = f"plugin {name!r} failed to load: {type(exc).__name__}: {exc}"
            log.warning(message)
            errors.append(message)
    return errors
