"""What an OpenAI-compatible request carries beyond the plain API, until the server refuses it.

api.openai.com answers 400 "Unrecognized request argument supplied: top_k" where llama.cpp and
vLLM take the sampling extensions; older servers refuse `stream_options`; a server without
tool calling refuses `tools` (openai_tools.tool_refusal names the ways). Each refusal drops
that argument for the rest of the process, logged once, and the request goes again without it.
"""

from __future__ import annotations

import logging
from typing import Any

import openai

from botkit.backends.openai_errors import error_message, refused_argument
from botkit.backends.openai_tools import tool_refusal

__all__ = ["EXTENSIONS", "RequestArguments"]

log = logging.getLogger(__name__)

# Not in the OpenAI API: sent in the body under the names llama.cpp's servers (top_k, min_p,
# repeat_penalty) and vLLM (top_k, min_p, repetition_penalty) read; each ignores the others.
EXTENSIONS = {"top_k": ("top_k",), "min_p": ("min_p",),
              "repeat_penalty": ("repeat_penalty", "repetition_penalty")}  # fmt: skip


class RequestArguments:
    """The optional arguments still sent to one server."""

    def __init__(self, where: str, sampling_extensions: bool) -> None:
        self._where = where
        self.extensions_on = sampling_extensions
        self.stream_options_on = True
        self.tools_refused: str | None = None  # why the server will not take `tools`

    def extensions(self, options: dict[str, Any]) -> dict[str, Any] | None:
        """The sampling extensions' body fields, or None once refused."""
        if not self.extensions_on:
            return None
        return {wire: options[name] for name, wires in EXTENSIONS.items() for wire in wires}

    def drop_refused(self, exc: openai.APIStatusError) -> bool:
        """Stop sending what the server refused by name (a 400 or 422 whose error names an
        argument beyond the plain request); True if something was dropped, so the request is
        worth sending again."""
        refused, detail = refused_argument(exc), error_message(exc)
        if self.extensions_on and any(refused in wires for wires in EXTENSIONS.values()):
            self.extensions_on = False
            log.warning(
                "%s refused an argument beyond the OpenAI API (%s): top_k, min_p and "
                "repeat_penalty are no longer sent, and /settings says so "
                "(sampling_extensions = false makes this the start)", self._where, detail,
            )  # fmt: skip
            return True
        if self.stream_options_on and refused == "stream_options":
            self.stream_options_on = False
            log.warning("%s refused stream_options (%s): usage is counted here instead",
                        self._where, detail)  # fmt: skip
            return True
        return False

    def refuse_tools(self, exc: openai.APIStatusError) -> bool:
        """Remember that the server refused `tools` (True), so the request goes again
        without them and later ones never carry them."""
        reason = tool_refusal(exc)
        if reason is None:
            return False
        self.tools_refused = reason
        log.warning("%s refused a request with tools (%s): asked again without them; this "
                    "backend goes on without tools", self._where, error_message(exc))  # fmt: skip
        return True
