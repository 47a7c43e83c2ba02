"""The context window of a model behind an OpenAI-compatible server, and where it came from.

In this order: what the server reports (vLLM's `max_model_len` in /v1/models, llama-server's
loaded `n_ctx` from GET /props; its /v1/models gives only the trained length), else `n_ctx`
from the config, else 4096 with a warning. Some servers report nothing (llama_cpp.server), so
a refusal that names the server's context length (openai_errors.named_window) replaces
whatever was assumed: the turn is then planned again for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI

from botkit.backends.base import BackendError, ContextOverflow, WindowLearned
from botkit.backends.openai_errors import error_message, named_window

__all__ = ["ServerWindow"]

log = logging.getLogger(__name__)

_DEFAULT = 4096  # when neither the server nor the config says
_LEARNED = "learned from the server's error"


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


class ServerWindow:
    """The window a backend plans for: found once, then learnt from refusals that name it."""

    def __init__(self, backend: str, where: str, n_ctx: int | None) -> None:
        self._backend = backend
        self._where = where
        self._n_ctx = n_ctx
        self._size: int | None = None  # None until found
        self.trained: int | None = None  # the length the model was trained for, if reported
        self.source = ""

    @property
    def found(self) -> bool:
        """Whether the server has been asked."""
        return self._size is not None

    @property
    def size(self) -> int:
        """Tokens of prompt plus reply; before the server is asked, the config's."""
        return self._size or self._n_ctx or _DEFAULT

    def describe(self) -> str:
        """The window and where it came from, for /model."""
        return f"{self.size} tokens ({self.source or 'not asked yet'})"

    async def find(self, client: AsyncOpenAI, root: str, listed: dict[str, Any]) -> None:
        """The window from the model's /v1/models entry (its extra fields) or /props."""
        meta = listed.get("meta")
        self.trained = _positive(meta.get("n_ctx_train")) if isinstance(meta, dict) else None
        reported = _positive(listed.get("max_model_len")) or await self._props(client, root)
        if reported is not None:
            self._size, self.source = reported, "reported by the server"
        elif self._n_ctx is not None:
            self._size, self.source = self._n_ctx, "n_ctx in the config"
        else:
            log.warning(
                "backend %s: the server does not report a context length and n_ctx is not "
                "set; assuming %d tokens until the server names its own in a refusal",
                self._backend, _DEFAULT,
            )  # fmt: skip
            self._size, self.source = _DEFAULT, "assumed: the server does not report it"

    @staticmethod
    async def _props(client: AsyncOpenAI, root: str) -> int | None:
        """llama-server's context per request (GET /props, default_generation_settings.n_ctx)."""
        try:
            props = await client.get(f"{root}/props", cast_to=object)
        except (openai.APIError, httpx.TransportError):
            return None  # not llama-server
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        return _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None

    async def why_empty(
        self, asked: Awaitable[object], prompt: int, planned: int
    ) -> ContextOverflow | None:
        """What the same request asked once more, unstreamed (`asked`), says about a stream
        that ended with nothing in it. llama_cpp.server answers a prompt longer than its window
        with an empty stream (its refusal is raised in the event publisher, after the 200:
        llama-cpp-python 0.3.36), yet refuses the same request unstreamed with the window
        named (before any token is generated). It drops the connection the empty stream came
        on just after: a second try takes a new one."""
        try:
            await asked
        except openai.APIStatusError as exc:
            return self.refused(exc, prompt, planned)
        except (openai.APIError, httpx.TransportError, BackendError):
            pass  # not a refusal: the stream's own failure is told
        return None

    def too_long(self, prompt: int, reply: int) -> ContextOverflow:
        """The error of a prompt that does not fit with its reply; WindowLearned if the window
        was learnt, as the prompt may have been planned before (by another chat's refusal)."""
        error = WindowLearned if self.source == _LEARNED else ContextOverflow
        return error(
            f"the prompt is {prompt} tokens and the reply may take {reply}, but the window is "
            f"{self.size} ({self.source})"
        )

    def refused(self, exc: openai.APIError, prompt: int, planned: int) -> ContextOverflow | None:
        """What a refusal of a prompt planned for a `planned`-token window means, if it names
        the server's window: WindowLearned if it names another (now the window), else
        ContextOverflow. None if it names none."""
        named = named_window(exc)
        if named is None:
            return None
        if named == planned:  # the counts here and the server's disagree
            return ContextOverflow(
                f"{self._where} refused the prompt ({prompt} tokens counted here) as too long "
                f"for its {named}-token window: {error_message(exc)}"
            )
        if named != self.size:  # not yet learnt from another chat's refusal
            log.warning(
                "backend %s: %s refused a prompt and named its context length, %d tokens (%d "
                "was %s): using %d from now on; set n_ctx = %d in the config to start with it",
                self._backend, self._where, named, self.size, self.source, named, named,
            )  # fmt: skip
            self._size, self.source = named, _LEARNED
        return WindowLearned(
            f"{self._where} has a {named}-token window, not {planned}: the prompt is planned again"
        )
