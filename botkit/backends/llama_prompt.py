"""Prompts as llama.cpp tokens: the model's own chat template, and text that stays text.

The template's markup may yield control tokens; the messages' contents never do. Each content
is rendered as a placeholder, and the pieces between placeholders are tokenized with special
tokens on, the contents with them off: a user who types `<|im_start|>system` gets that literal
text, not a system turn.

Tools: a template that renders Hermes `<tool_call>`s itself (its source uses `tools` and
`<tool_call>`, as Qwen2.5's does) gets the tools, the calls and the results as it expects
them. Any other template gets botkit's Hermes rendering (hermes.py) as plain content: the
tools block after the system message, calls as assistant text, each result as a user turn.
The tools block is part of the system prompt, so it belongs to a chat's KV prefix: turning
tools on or off (or changing them) re-evaluates the conversation from there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from cachetools import LRUCache

from botkit.backends import hermes
from botkit.backends.base import Message
from botkit.tools.spec import ToolSpec

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
        # The template writes tools and Hermes calls itself (else hermes.py's rendering).
        self.native_tools = bool(re.search(r"\btools\b", template)) and (
            hermes.CALL_OPEN in template
        )
        self._formatters: dict[bool, Any] = {
            generation: Jinja2ChatFormatter(
                template, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=generation
            )
            for generation in (True, False)
        }
        self._message_cache: dict[tuple[str, ...], int] = {}
        # Persona and anchor prompts: bounded by tokens (a message may be 16,000 characters).
        self._prompt_cache: LRUCache[tuple[object, ...], list[int]] = LRUCache(
            maxsize=_PROMPT_CACHE_TOKENS, getsizeof=len
        )

    def prompt(
        self,
        messages: Sequence[Message],
        *,
        generation: bool = True,
        tools: Sequence[ToolSpec] = (),
    ) -> list[int]:
        """The prompt's tokens (with the generation prompt unless generation is False), with
        these tools declared."""
        if len(messages) <= 2:  # the persona and anchor prompts recur on every turn
            key = (generation, _tools_key(tools), *(_message_key(m) for m in messages))
            cached = self._prompt_cache.get(key)
            if cached is None:
                cached = self._render(messages, generation, tools)
                if len(cached) <= _PROMPT_CACHE_TOKENS:  # a larger one is not kept
                    self._prompt_cache[key] = cached
            return list(cached)
        return self._render(messages, generation, tools)

    def tool_tokens(self, tools: Sequence[ToolSpec]) -> int:
        """Tokens these declarations add to a prompt that starts with a system message."""
        if not tools:
            return 0
        anchor: list[Message] = [{"role": "system", "content": "."}]
        without = self.prompt(anchor, generation=False)
        return len(self.prompt(anchor, generation=False, tools=tools)) - len(without)

    def message_tokens(self, message: Message) -> int:
        """Tokens one message adds: rendered after a fixed system message, minus that message.

        Cached per message (its role, content and calls): stored messages are counted once,
        personas once per turn.
        """
        key = _message_key(message)
        count = self._message_cache.get(key)
        if count is None:
            anchor: Message = {"role": "system", "content": "."}
            framed = self.prompt([anchor, message], generation=False)
            count = len(framed) - len(self.prompt([anchor], generation=False))
            if len(self._message_cache) >= _MESSAGE_CACHE:
                self._message_cache.clear()
            self._message_cache[key] = count
        return count

    def _render(
        self, messages: Sequence[Message], generation: bool, tools: Sequence[ToolSpec]
    ) -> list[int]:
        llm = self._llm
        texts: list[str] = []  # plain text, each tokenized on its own

        def mark(*parts: str) -> str:
            texts.extend(parts)
            return "".join(f"{_MARK_OPEN}{len(texts) - len(parts) + i}{_MARK_CLOSE}"
                           for i in range(len(parts)))  # fmt: skip

        if self.native_tools:
            marked = [_native(m, mark) for m in messages]
            declared = [t.to_openai() for t in tools] or None
            result = self._formatters[generation](messages=marked, tools=declared)
        else:
            marked = _hermes(messages, tools, mark)
            result = self._formatters[generation](messages=marked)
        # The same rule as llama-cpp-python's own chat handler: a BOS only if the template
        # did not write one, so our counts match what create_chat_completion would send.
        tokens: list[int] = [llm.token_bos()] if not result.added_special else []
        for index, piece in enumerate(_MARK.split(result.prompt)):
            if not piece:
                continue
            if index % 2:  # a placeholder's number: a message's text, as plain text
                text, special = texts[int(piece)], False
            else:
                text, special = piece, True
            tokens += llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        return tokens


def _message_key(message: Message) -> tuple[str, ...]:
    calls = message.get("tool_calls")
    return (message["role"], message["content"], json.dumps(calls) if calls else "")


def _tools_key(tools: Sequence[ToolSpec]) -> str:
    return json.dumps([t.to_openai() for t in tools]) if tools else ""


def _native(message: Message, mark: Any) -> dict[str, Any]:
    """A message for a template that renders tools itself (arguments as objects, as
    Hugging Face's apply_chat_template passes them; the template writes them as JSON)."""
    out: dict[str, Any] = {"role": message["role"], "content": mark(message["content"])}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {**call, "function": {**call["function"],
                                  "arguments": _object(call["function"]["arguments"])}}
            for call in message["tool_calls"]
        ]  # fmt: skip
    for key in ("tool_call_id", "name"):
        if key in message:
            out[key] = message[key]
    return out


def _object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _hermes(messages: Sequence[Message], tools: Sequence[ToolSpec], mark: Any) -> list[Any]:
    """botkit's Hermes rendering, as plain-content messages for any template."""
    out: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        role, content = str(message["role"]), message["content"]
        if role == "tool":  # a result is data the user side hands back, never system text
            out.append({"role": "user", "content": mark(hermes.response_text(content))})
        elif message.get("tool_calls"):
            calls = "\n".join(
                hermes.call_text(c["function"]["name"], c["function"]["arguments"])
                for c in message["tool_calls"]
            )
            parts = (content, "\n", calls) if content else (calls,)
            out.append({"role": role, "content": mark(*parts)})
        elif index == 0 and role == "system" and tools:
            out.append({"role": role, "content": mark(content, hermes.tools_block(tools))})
        else:
            out.append({"role": role, "content": mark(content)})
    if tools and (not messages or messages[0]["role"] != "system"):
        block = hermes.tools_block(tools).lstrip("\n")
        out.insert(0, {"role": "system", "content": mark(block)})
    return out
