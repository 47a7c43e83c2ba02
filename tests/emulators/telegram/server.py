"""A Telegram Bot API stand-in on 127.0.0.1, speaking the documented HTTP interface.

Requests go to /bot<token>/<method> with form-encoded (or JSON) parameters; answers use the
{"ok": true, "result": ...} envelope, errors {"ok": false, "error_code", "description",
"parameters": {"retry_after"}}. getUpdates long-polls with offset and timeout like the real
server. Tests inject user messages with `user_message()` and read what the bot sent from
`messages`; `fail_next` queues error replies for a method (e.g. a 429 on editMessageText).
Files users send are in `files` (files.py: getFile, the download URL and its faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

from tests.emulators.telegram.entities import text_entities
from tests.emulators.telegram.files import FileStore

BOT_USERNAME = "botkit_test_bot"
_ADMIN_RIGHTS = (
    "can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages",
    "can_manage_video_chats", "can_restrict_members", "can_promote_members", "can_change_info",
    "can_invite_users", "can_post_stories", "can_edit_stories", "can_delete_stories",
)  # fmt: skip


@dataclass
class SentMessage:
    """A message the bot sent, with its current text and how often it was edited."""

    chat_id: int
    message_id: int
    text: str
    thread_id: int | None = None
    reply_to: int | None = None
    edits: int = 0
    photo: bool = False
    deleted: bool = False


@dataclass
class BotApiEmulator:
    """Start with `await emulator.start()`; `emulator.base_url` goes to PTB's base_url."""

    token: str = "123456:TEST-token-not-real-0123456789"
    admins: dict[int, set[int]] = field(default_factory=dict)
    messages: list[SentMessage] = field(default_factory=list)
    actions: list[tuple[int, str]] = field(default_factory=list)
    commands: list[dict[str, str]] = field(default_factory=list)
    fail_next: dict[str, list[tuple[int, str, int | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    calls: list[str] = field(default_factory=list)
    photos: list[tuple[int, bytes, str | None]] = field(default_factory=list)
    base_url: str = ""
    webhook_url: str = ""
    webhook_secret: str | None = None
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _next_update: int = 1
    _next_message: dict[int, int] = field(default_factory=lambda: defaultdict(lambda: 1))
    _confirmed: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    files: FileStore = field(init=False)

    def __post_init__(self) -> None:
        self.files = FileStore(self.token)

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self.files.register(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/bot"

    async def stop(self) -> None:
        """Stop serving."""
        self.files.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what tests do --------------------------------------------------------------------

    async def user_message(self, text: str, **kwargs: Any) -> int:
        """Queue a message from a user (options as for `message`); returns its update_id."""
        return await self.push_update({"message": self.message(text, **kwargs)})

    async def user_file(self, caption: str, media: dict[str, Any], **kwargs: Any) -> int:
        """Queue a document or photo from a user: media is {"document": StoredFile.document()}
        or {"photo": [StoredFile.photo_size(), …]}; the caption carries the text."""
        message = self.message(caption, **kwargs)
        del message["text"]
        if caption:  # the entities of a caption are caption_entities (Bot API, Message)
            message["caption"] = caption
            message["caption_entities"] = message.pop("entities", [])
        return await self.push_update({"message": {**message, **media}})

    def message(
        self,
        text: str,
        *,
        chat_id: int = 1001,
        user_id: int = 1001,
        first_name: str = "Alice",
        group: bool = False,
        thread_id: int | None = None,
        reply_to: SentMessage | None = None,
    ) -> dict[str, Any]:
        """A Message object from a user, as the Bot API shapes it."""
        message_id = self._take_message_id(chat_id)
        chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": first_name}
        if group:
            chat = {
                "id": chat_id,
                "type": "supergroup",
                "title": "Group",
                "is_forum": bool(thread_id),
            }
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        entities = text_entities(text)
        if entities:
            message["entities"] = entities
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = {
                "message_id": reply_to.message_id,
                "date": int(time.time()),
                "chat": chat,
                "from": self._bot_user,
                "text": reply_to.text,
            }
        return message

    async def post_webhook(self, text: str, secret: str | None, **kwargs: Any) -> tuple[int, int]:
        """POST an update to the bot's webhook as Telegram would; (HTTP status, update_id)."""
        assert self.webhook_url, "the bot has not called setWebhook"
        update_id = self._next_update
        self._next_update += 1
        update = {"update_id": update_id, "message": self.message(text, **kwargs)}
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with (
            ClientSession() as session,
            session.post(self.webhook_url, json=update, headers=headers) as response,
        ):
            return response.status, update_id

    async def push_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update (given an update_id, deliver it again: a duplicate)."""
        async with self._changed:
            if "update_id" not in update:
                update = {"update_id": self._next_update, **update}
                self._next_update += 1
            self._updates.append(update)
            self._changed.notify_all()
        return int(update["update_id"])

    async def wait_for(self, predicate: Any) -> None:
        """Wait until predicate() is true; re-checked after every request the bot makes."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    def sent_to(self, chat_id: int) -> list[SentMessage]:
        """Messages the bot sent to a chat, oldest first."""
        return [m for m in self.messages if m.chat_id == chat_id]

    # --- the HTTP side ----------------------------------------------------------------------

    def _take_message_id(self, chat_id: int) -> int:
        message_id = self._next_message[chat_id]
        self._next_message[chat_id] += 1
        return message_id

    @staticmethod
    def _reply(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(code: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=code)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data: dict[str, Any] = await request.json()
            return data
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = value.file.read()
                continue
            text = str(value)
            try:
                params[key] = json.loads(text)  # PTB JSON-encodes every non-string value
            except json.JSONDecodeError:
                params[key] = text
        return params

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(method)
        failures = self.fail_next.get(method)
        if failures:
            code, description, retry_after = failures.pop(0)
            async with self._changed:
                self._changed.notify_all()
            return self._error(code, description, retry_after)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._error(404, f"Not Found: method {method} is not emulated")
        response: web.Response = await handler(params)
        async with self._changed:
            self._changed.notify_all()
        return response

    @property
    def bot_id(self) -> int:
        """The bot's user id: a token is "<bot id>:<secret>" (Bot API docs, Authorizing your
        bot: "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"), so two bots never share one."""
        return int(self.token.split(":", 1)[0])

    @property
    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "botkit",
                "username": BOT_USERNAME}  # fmt: skip

    async def _m_getMe(self, _params: dict[str, Any]) -> web.Response:
        return self._reply(
            {**self._bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
             "supports_inline_queries": False}
        )  # fmt: skip

    async def _m_deleteWebhook(self, _params: dict[str, Any]) -> web.Response:
        self.webhook_url = ""
        return self._reply(True)

    async def _m_setWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook_url = str(params["url"])
        self.webhook_secret = params.get("secret_token")
        return self._reply(True)

    async def _m_setMyCommands(self, params: dict[str, Any]) -> web.Response:
        commands = params.get("commands", [])
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command["command"]):
                return self._error(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command["description"]) <= 256:
                return self._error(400, "Bad Request: command description is invalid")
        self.commands = commands
        return self._reply(True)

    async def _m_getUpdates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset", 0))
        timeout = float(params.get("timeout", 0))
        if offset:
            self._confirmed = max(self._confirmed, offset - 1)
        async with self._changed:
            # Confirmed updates are gone for good, as on the real server.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self._changed.notify_all()
            if not self._updates and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._updates)), timeout
                    )
            return self._reply(list(self._updates))

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A user (or an admin) deletes a message the bot sent: later edits of it fail with
        "message to edit not found", as on the real server."""
        for message in self.messages:
            if (message.chat_id, message.message_id) == (chat_id, message_id):
                message.deleted = True

    def delivered(self, update_id: int) -> bool:
        """Whether the bot has confirmed (by its next offset) receiving the update."""
        return self._confirmed >= update_id

    async def _m_sendChatAction(self, params: dict[str, Any]) -> web.Response:
        self.actions.append((int(params["chat_id"]), str(params["action"])))
        return self._reply(True)

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        # The server trims the text (tdlib td/telegram/MessageEntity.cpp, fix_formatted_text
        # strips leading and trailing whitespace unless it is a draft).
        text = str(params.get("text", "")).strip()
        if not text:
            return self._error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return self._error(400, "Bad Request: message is too long")
        if params.get("parse_mode"):
            return self._error(400, "Bad Request: the emulator expects plain text")
        chat_id = int(params["chat_id"])
        reply = params.get("reply_parameters") or {}
        sent = SentMessage(
            chat_id=chat_id,
            message_id=self._take_message_id(chat_id),
            text=text,
            thread_id=params.get("message_thread_id"),
            reply_to=reply.get("message_id"),
        )
        self.messages.append(sent)
        return self._reply(self._message_json(sent))

    async def _m_sendPhoto(self, params: dict[str, Any]) -> web.Response:
        photo = params.get("photo")
        if not isinstance(photo, bytes) or not photo:
            return self._error(400, "Bad Request: there is no photo in the request")
        caption = params.get("caption")
        if caption is not None and len(str(caption)) > 1024:
            return self._error(400, "Bad Request: message caption is too long")
        chat_id = int(params["chat_id"])
        self.photos.append((chat_id, photo, None if caption is None else str(caption)))
        sent = SentMessage(chat_id, self._take_message_id(chat_id), str(caption or ""), photo=True)
        self.messages.append(sent)
        return self._reply(self._message_json(sent))

    async def _m_editMessageText(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        message_id = int(params["message_id"])
        text = str(params.get("text", "")).strip()  # trimmed as in sendMessage
        if not text:
            return self._error(400, "Bad Request: message text is empty")
        target = next(
            (
                m
                for m in self.messages
                if m.chat_id == chat_id and m.message_id == message_id and not m.deleted
            ),
            None,
        )
        if target is None:
            return self._error(400, "Bad Request: message to edit not found")
        if len(text) > 4096:
            return self._error(400, "Bad Request: MESSAGE_TOO_LONG")
        if text == target.text:
            return self._error(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        target.text = text
        target.edits += 1
        return self._reply(self._message_json(target))

    async def _m_getFile(self, params: dict[str, Any]) -> web.Response:
        status, result = self.files.get_file(params)
        return self._error(status, result) if status else self._reply(result)

    async def _m_getChatMember(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        user_id = int(params["user_id"])
        status = "administrator" if user_id in self.admins.get(chat_id, set()) else "member"
        member: dict[str, Any] = {
            "status": status,
            "user": {"id": user_id, "is_bot": False, "first_name": "User"},
        }
        if status == "administrator":
            member.update(dict.fromkeys(_ADMIN_RIGHTS, True))
        return self._reply(member)

    def _message_json(self, message: SentMessage) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": {"id": message.chat_id, "type": "private", "first_name": "Alice"},
            "from": self._bot_user,
            "text": message.text,
        }
        if message.thread_id is not None:
            data["message_thread_id"] = message.thread_id
        return data
