"""A local emulator of an OpenAI-compatible server, for the failures a real one cannot be made
to produce on demand (see server.py)."""

from tests.emulators.openai.server import OpenAIEmulator

__all__ = ["OpenAIEmulator"]
