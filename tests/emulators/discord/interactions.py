"""Interactions: a user's slash command (INTERACTION_CREATE), the bot's one callback to it,
and the interaction webhook (the original response and follow-ups) its token opens.

As https://discord.com/developers/docs/interactions/receiving-and-responding: the callback
must come within 3 s and only once (10062 Unknown interaction, 40060 already acknowledged),
its type is one of the documented ones; a deferred response (type 5) shows "thinking…" until
it is edited or the first follow-up fills it; the token serves the webhook for 15 minutes
(50027 Invalid Webhook Token after), follow-ups need a callback first, and ephemeral messages
stay ephemeral.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from tests.emulators.discord.commands import Commands
from tests.emulators.discord.constants import (
    APPLICATION_ID,
    BOT_ID,
    EPHEMERAL,
    GUILD_ID,
    JSON,
    LOADING,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
)
from tests.emulators.discord.gateway import Gateway
from tests.emulators.discord.messages import Messages
from tests.emulators.discord.records import InteractionRecord, MessageRecord
from tests.emulators.discord.rest import (
    Reject,
    RestRouter,
    error,
    form_error,
    json_response,
    message_body,
)
from tests.emulators.discord.state import EmulatorState
from tests.emulators.discord.world import World

__all__ = ["Interactions"]

_CALLBACK_TYPES = {1, 4, 5, 6, 7, 8, 9, 10, 12}


class Interactions:
    """Slash commands sent to the bot, and the routes it answers them by."""

    def __init__(
        self,
        state: EmulatorState,
        world: World,
        messages: Messages,
        gateway: Gateway,
        commands: Commands,
    ) -> None:
        self._state = state
        self._world = world
        self._messages = messages
        self._gateway = gateway
        self._commands = commands
        self._by_token: dict[str, InteractionRecord] = {}

    def register(self, rest: RestRouter, app: web.Application) -> None:
        """Add the interaction callback and webhook routes to app."""
        add = rest.add
        add(app, "POST", "/interactions/{interaction_id}/{token}/callback", self._callback,
            auth=False, op="callback")  # fmt: skip
        hook = "/webhooks/{app_id}/{token}"
        add(app, "POST", hook, self._post_followup, auth=False, op="followup")
        for target, op in (("@original", "edit_original"), ("{message_id}", "edit_followup")):
            path = f"{hook}/messages/{target}"
            add(app, "GET", path, self._get_webhook_message, auth=False)
            add(app, "PATCH", path, self._patch_webhook_message, auth=False, op=op)
            add(app, "DELETE", path, self._delete_webhook_message, auth=False)

    async def create(
        self, name: str, options: dict[str, Any], *, channel_id: int, user_id: int
    ) -> InteractionRecord:
        """A user runs a chat-input command: dispatch INTERACTION_CREATE (type 2)."""
        guild = self._state.in_guild(channel_id, user_id)
        session = self._gateway.target(guild)
        command, guild_command = self._commands.find(name, guild)
        resolved: JSON = {}
        definitions = command.get("options") or [] if command else []
        built = self._commands.build_options(definitions, options, resolved, guild)
        data: JSON = {"id": command["id"] if command else str(self._state.snowflake()),
                      "name": name, "type": 1}  # fmt: skip
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if guild_command:
            data["guild_id"] = str(GUILD_ID)
        interaction_id = str(self._state.snowflake())
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: JSON = {
            "id": interaction_id, "application_id": str(APPLICATION_ID), "type": 2,
            "token": token, "version": 1, "data": data, "channel_id": str(channel_id),
            "channel": self._world.channel_json(channel_id, viewer=user_id), "locale": "en-US",
            "app_permissions": str(self._state.permissions_of(BOT_ID)), "entitlements": [],
            "authorizing_integration_owners": {"0": str(GUILD_ID) if guild else "0"},
            "context": 0 if guild else 1, "attachment_size_limit": 10 * 1024 * 1024,
        }  # fmt: skip
        if guild:
            payload["guild_id"] = str(GUILD_ID)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(GUILD_ID), "locale": "en-US", "features": []}
            payload["member"] = self._world.member_json(user_id, with_user=True, permissions=True)
        else:
            payload["user"] = self._world.user_json(user_id)
        record = InteractionRecord(
            id=interaction_id, token=token, name=name, channel_id=channel_id, user_id=user_id,
            created=time.monotonic(), payload=payload,
        )  # fmt: skip
        self._state.interactions[interaction_id] = record
        self._by_token[token] = record
        await self._gateway.dispatch_to(session, "INTERACTION_CREATE", payload)
        await self._state.notify()
        return record

    async def _callback(self, request: web.Request) -> web.Response:
        record = self._state.interactions.get(request.match_info["interaction_id"])
        if record is None or record.token != request.match_info["token"]:
            return error(404, "Unknown interaction", 10062)
        if record.callbacks:
            return error(400, "Interaction has already been acknowledged.", 40060)
        if time.monotonic() - record.created > self._state.callback_deadline:
            return error(404, "Unknown interaction", 10062)
        body, files = await message_body(request)
        kind = body.get("type")
        if kind not in _CALLBACK_TYPES:
            raise form_error(
                ["type"], "BASE_TYPE_CHOICES", f"Value must be one of {sorted(_CALLBACK_TYPES)}."
            )
        data = body.get("data") or {}
        if not isinstance(data, dict):
            raise form_error(["data"], "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        ephemeral = int(data.get("flags") or 0) & EPHEMERAL
        message: MessageRecord | None = None
        if kind == 4:
            self._messages.check(data, files, creating=True)
            flags = ephemeral | (
                int(data.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS)
            )
            message = self._messages.create(record.channel_id, data, files, via="original",
                                        flags=flags, interaction=record)  # fmt: skip
        elif kind == 5:
            message = self._messages.create(record.channel_id, {}, [], via="original",
                                        flags=LOADING | ephemeral, interaction=record)  # fmt: skip
            record.ephemeral_defer = bool(ephemeral)
        record.callbacks.append(kind)
        if message is not None:
            record.original = message
            await self._gateway.echo("MESSAGE_CREATE", message)
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        answer: JSON = {"interaction": {
            "id": record.id, "type": 2,
            "response_message_id": str(message.id) if message else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(message and message.ephemeral),
        }}  # fmt: skip
        if message is not None:
            answer["resource"] = {"type": kind, "message": self._state.payloads[message.id]}
        return json_response(answer)

    def _webhook_interaction(self, request: web.Request) -> InteractionRecord:
        if request.match_info["app_id"] != str(APPLICATION_ID):
            raise Reject(error(404, "Unknown Webhook", 10015))
        record = self._by_token.get(request.match_info["token"])
        if record is None or time.monotonic() - record.created > self._state.token_lifetime:
            raise Reject(error(401, "Invalid Webhook Token", 50027))
        return record

    def _webhook_target(self, request: web.Request) -> MessageRecord:
        record = self._webhook_interaction(request)
        wanted = request.match_info.get("message_id", "@original")
        candidates = [record.original, *record.followups]
        for message in candidates:
            if message is None or message.deleted:
                continue
            if wanted == str(message.id) or (wanted == "@original" and message is record.original):
                return message
        raise Reject(error(404, "Unknown Message", 10008))

    async def _post_followup(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        if not record.callbacks:
            return error(404, "Unknown Webhook", 10015)
        body, files = await message_body(request)
        self._messages.check(body, files, creating=True)
        original = record.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up to a deferred response fills the "thinking…" message.
            payload = self._messages.edit(original, body, files)
            await self._gateway.echo("MESSAGE_UPDATE", original)
            return json_response(payload)
        keep = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS
        flags = int(body.get("flags") or 0) & keep
        message = self._messages.create(
            record.channel_id, body, files, via="followup", flags=flags, interaction=record
        )
        record.followups.append(message)
        await self._gateway.echo("MESSAGE_CREATE", message)
        return json_response(
            self._state.payloads[message.id]
        )  # interaction follow-ups always "wait"

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        return json_response(self._state.payloads[self._webhook_target(request).id])

    async def _patch_webhook_message(self, request: web.Request) -> web.Response:
        message = self._webhook_target(request)
        body, files = await message_body(request)
        self._messages.check(body, files, creating=False)
        payload = self._messages.edit(message, body, files)
        await self._gateway.echo("MESSAGE_UPDATE", message)
        return json_response(payload)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        message = self._webhook_target(request)
        self._messages.delete(message)
        await self._gateway.echo("MESSAGE_DELETE", message)
        return web.Response(status=204)
