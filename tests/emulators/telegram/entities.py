"""The entities the Bot API marks in a user's text: a leading bot command and @mentions."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["text_entities"]


def text_entities(text: str) -> list[dict[str, Any]]:
    """The MessageEntity objects of text: bot_command at its start, then its mentions."""

    # Offsets and lengths count UTF-16 code units, not characters: an emoji before a
    # mention moves it by two (https://core.telegram.org/bots/api#messageentity).
    def units(piece: str) -> int:
        return len(piece.encode("utf-16-le")) // 2

    found = []
    command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
    if command:
        found.append({"type": "bot_command", "offset": 0, "length": units(command[0])})
    for mention in re.finditer(r"@[A-Za-z0-9_]{5,32}", text):
        if command and mention.start() < command.end():
            continue
        found.append(
            {
                "type": "mention",
                "offset": units(text[: mention.start()]),
                "length": units(mention[0]),
            }
        )
    return found
