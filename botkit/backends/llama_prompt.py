"""Prompts as llama.cpp tokens: the model's own chat template, and text that stays text.

The template's markup may yield control tokens; the messages' contents never do. Each content
is rendered as a placeholder, and the pieces between placeholders are tokenized with special
tokens on, the contents with them off: a user who types `<|im_start|>system` gets that literal
text, not a system turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cachetools import LRUCache

from botkit.backends.base import Message

__all__ = ["PromptTokenizer"]

_PROMPT_CACHE_TOKENS = 262_144  # about 10 MB of Python ints
_MESSAGE_CACHE = 4096

# Placeholders for message contents while the chat template renders (private-use characters,
# which no template touches).
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARK = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")


class PromptTokenizer:
    """Tokenizes chat prompts for one loaded model (call only from its worker thread or while
    the model is not generating: llama.cpp's tokenizer reads the model, not the context)."""

    def __init__(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("no chat template in the GGUF metadata")
        eos, bos = llm.token_eos(), llm.token_bos()
        eos_text = llm.detokenize([eos], special=True).decode("utf-8", "replace")
        bos_text = (
            llm.detokenize([bos], special=True).decode("utf-8", "replace") if bos >= 0 else ""
        )
        self._llm = llm
        self._formatters: dict[bool, Any] = {
            generation: Jinja2ChatFormatter(
                template, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=generation
            )
            for generation in (True, False)
        }
        self._message_cache: dict[tuple[str, str], int] = {}
        # Persona and anchor prompts: bounded by tokens (a message may be 16,000 characters).
        self._prompt_cache: LRUCache[tuple[object, ...], list[int]] = LRUCache(
            maxsize=_PROMPT_CACHE_TOKENS, getsizeof=len
        )

    def prompt(self, messages: Sequence[Message], *, generation: bool = True) -> list[int]:
        """The prompt's tokens (with the generation prompt unless generation is False)."""
        if len(messages) <= 2:  # the persona and anchor prompts recur on every turn
            key = (generation, *((m["role"], m["content"]) for m in messages))
            cached = self._prompt_cache.get(key)
            if cached is None:
                cached = self._render(messages, generation)
                if len(cached) <= _PROMPT_CACHE_TOKENS:  # a larger one is not kept
                    self._prompt_cache[key] = cached
            return list(cached)
        return self._render(messages, generation)

    def message_tokens(self, message: Message) -> int:
        """Tokens one message adds: rendered after a fixed system message, minus that message.

        Cached per (role, content): stored messages are counted once, personas once per turn.
        """
        key = (message["role"], message["content"])
        count = self._message_cache.get(key)
        if count is None:
            anchor: Message = {"role": "system", "content": "."}
            framed = self.prompt([anchor, message], generation=False)
            count = len(framed) - len(self.prompt([anchor], generation=False))
            if len(self._message_cache) >= _MESSAGE_CACHE:
                self._message_cache.clear()
            self._message_cache[key] = count
        return count

    def _render(self, messages: Sequence[Message], generation: bool) -> list[int]:
        llm = self._llm
        marked = [
            {"role": m["role"], "content": f"{_MARK_OPEN}{i}{_MARK_CLOSE}"}
            for i, m in enumerate(messages)
        ]
        result = self._formatters[generation](messages=marked)
        # The same rule as llama-cpp-python's own chat handler: a BOS only if the template
        # did not write one, so our counts match what create_chat_completion would send.
        tokens: list[int] = [llm.token_bos()] if not result.added_special else []
        for index, piece in enumerate(_MARK.split(result.prompt)):
            if not piece:
                continue
            if index % 2:  # a placeholder's number: the message's text, as plain text
                text, special = messages[int(piece)]["content"], False
            else:
                text, special = piece, True
            tokens += llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        return tokens
