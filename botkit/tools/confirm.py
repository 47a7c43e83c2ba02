"""Calls waiting for a person's yes: a tool marked `confirm` runs only once the user whose
message started the turn answers /confirm (or not, on /deny or after the wait)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["Confirmations"]


@dataclass
class _Waiting:
    user_id: str
    tool: str
    answer: asyncio.Future[bool]


class Confirmations:
    """The call waiting in each chat (a chat's turns run one at a time: one at most)."""

    def __init__(self) -> None:
        self._waiting: dict[int, _Waiting] = {}
        self._asked = asyncio.Event()  # set each time a call starts waiting

    async def ask(self, chat_id: int, user_id: str, tool: str, wait: float) -> bool | None:
        """Wait for the user's answer: True (confirmed), False (denied), None (no answer
        within wait seconds)."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[chat_id] = _Waiting(user_id, tool, answer)
        self._asked.set()
        try:
            return await asyncio.wait_for(answer, wait)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(chat_id, None)

    async def waiting(self, chat_id: int) -> str:
        """Return once a call waits for an answer in the chat: its tool's name."""
        while chat_id not in self._waiting:
            self._asked.clear()
            await self._asked.wait()
        return self._waiting[chat_id].tool

    def answer(self, chat_id: int, user_id: str, yes: bool) -> str:
        """Answer the chat's waiting call as user_id; what to tell them."""
        waiting = self._waiting.get(chat_id)
        if waiting is None or waiting.answer.done():
            return "No tool call is waiting for a confirmation in this chat."
        if waiting.user_id != user_id:
            return "Only the person whose message asked for this tool call can answer it."
        waiting.answer.set_result(yes)
        return f"{waiting.tool}: {'confirmed' if yes else 'denied'}."
