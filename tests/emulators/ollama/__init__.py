"""A local emulator of the Ollama HTTP API (see server.py)."""

from tests.emulators.ollama.server import ChatRecord, EmulatedModel, OllamaEmulator

__all__ = ["ChatRecord", "EmulatedModel", "OllamaEmulator"]
