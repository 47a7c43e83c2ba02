"""A local emulator of the Ollama HTTP API (see server.py)."""

from tests.emulators.ollama.server import ChatRecord, EmulatedModel, OllamaEmulator
from tests.emulators.ollama.tools import OllamaToolReply

__all__ = ["ChatRecord", "EmulatedModel", "OllamaEmulator", "OllamaToolReply"]
