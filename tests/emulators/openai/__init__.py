"""A local emulator of an OpenAI-compatible server, for the failures a real one cannot be made
to produce on demand (see server.py)."""

from tests.emulators.openai.server import OpenAIEmulator
from tests.emulators.openai.tools import ToolReply

__all__ = ["OpenAIEmulator", "ToolReply"]
