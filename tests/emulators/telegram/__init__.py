"""A local emulator of the Telegram Bot API (see server.py)."""

from tests.emulators.telegram.server import BotApiEmulator, SentMessage

__all__ = ["BotApiEmulator", "SentMessage"]
