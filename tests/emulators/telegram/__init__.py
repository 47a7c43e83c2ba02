"""A local emulator of the Telegram Bot API (see server.py)."""

from tests.emulators.telegram.files import MAX_DOWNLOAD, FileStore, StoredFile
from tests.emulators.telegram.server import BotApiEmulator, SentMessage

__all__ = ["MAX_DOWNLOAD", "BotApiEmulator", "FileStore", "SentMessage", "StoredFile"]
