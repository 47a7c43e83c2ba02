"""Token counts for backends without a tokenizer endpoint (Ollama): a calibrated estimate.

Starts conservative (two characters a token) and learns the real ratio from the prompt token
counts the server reports for replies. It keeps the largest ratio seen recently, with a margin,
so the estimate errs towards too many tokens: an over-full prompt is silently truncated by
Ollama, an under-full one only wastes a little context.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Sequence

from botkit.backends.base import Message

__all__ = ["TokenEstimator", "counted_text"]


def counted_text(message: Message) -> str:
    """The text of a message that costs tokens: its content, and the calls an assistant
    message made as their JSON (each template renders calls its own way; their JSON is what
    every way carries). A tool message's name is in its framing."""
    calls = message.get("tool_calls")
    if not calls:
        return message["content"]
    return message["content"] + json.dumps(calls, ensure_ascii=False)


class TokenEstimator:
    """chars × ratio + template framing per message, calibrated from observed prompt counts."""

    def __init__(
        self, initial_ratio: float = 0.5, framing: int = 8, margin: float = 1.1, window: int = 20
    ) -> None:
        self.ratio = initial_ratio
        self.framing = framing
        self.margin = margin
        self._observed: deque[float] = deque(maxlen=window)

    @property
    def version(self) -> str:
        """Changes when the ratio moves enough that stored counts should be redone."""
        return f"{self.ratio:.2f}"

    def message(self, message: Message) -> int:
        """Estimated tokens of one message, template framing included."""
        return math.ceil(len(counted_text(message)) * self.ratio) + self.framing

    def prompt(self, messages: Sequence[Message]) -> int:
        """Estimated tokens of a whole prompt, generation prompt included."""
        return sum(self.message(m) for m in messages) + self.framing

    def observe(self, messages: Sequence[Message], actual_tokens: int) -> None:
        """Learn from the server's count of the prompt built from messages."""
        chars = sum(len(counted_text(m)) for m in messages)
        content_tokens = actual_tokens - self.framing * (len(messages) + 1)
        if chars < 200 or content_tokens <= 0:
            return  # too little text to say anything about the ratio
        self._observed.append(content_tokens / chars)
        self.ratio = max(self._observed) * self.margin
