"""The REST routes of channels and their messages: fetch a channel, its history and a message;
send, edit and delete the bot's messages; typing; the bot's reactions.

As https://discord.com/developers/docs/resources/channel and
https://discord.com/developers/docs/resources/message: an unknown channel is 10003 and an
unknown (or ephemeral) message 10008; only the bot's own messages can be edited (50005) or
deleted here (50013, as the bot has no MANAGE_MESSAGES); history holds 1 to 100 messages, newest
first, ephemeral ones never.
"""

from __future__ import annotations

from aiohttp import web

from tests.emulators.discord.constants import EPHEMERAL, SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS
from tests.emulators.discord.gateway import Gateway
from tests.emulators.discord.messages import Messages
from tests.emulators.discord.rest import Reject, RestRouter, error, json_response, message_body
from tests.emulators.discord.state import EmulatorState
from tests.emulators.discord.world import World

__all__ = ["ChannelRoutes"]


class ChannelRoutes:
    """Handlers for /channels/{channel_id}/..."""

    def __init__(
        self, state: EmulatorState, world: World, messages: Messages, gateway: Gateway
    ) -> None:
        self._state = state
        self._world = world
        self._messages = messages
        self._gateway = gateway

    def register(self, rest: RestRouter, app: web.Application) -> None:
        """Add the channel routes to app."""
        add = rest.add
        add(app, "GET", "/channels/{channel_id}", self._get_channel)
        add(app, "GET", "/channels/{channel_id}/messages", self._get_history)
        add(app, "POST", "/channels/{channel_id}/messages", self._post_message, op="send")
        add(app, "POST", "/channels/{channel_id}/typing", self._post_typing)
        message = "/channels/{channel_id}/messages/{message_id}"
        add(app, "GET", message, self._get_message)
        add(app, "PATCH", message, self._patch_message, op="edit")
        add(app, "DELETE", message, self._delete_message)
        add(app, "PUT", message + "/reactions/{emoji}/@me", self._put_reaction)
        add(app, "DELETE", message + "/reactions/{emoji}/@me", self._delete_reaction)

    def _channel_id(self, request: web.Request) -> int:
        try:
            channel_id = int(request.match_info["channel_id"])
        except ValueError:
            raise Reject(error(404, "Unknown Channel", 10003)) from None
        if channel_id not in self._state.channels and channel_id not in self._state.dm_users:
            raise Reject(error(404, "Unknown Channel", 10003))
        return channel_id

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._world.channel_json(self._channel_id(request)))

    async def _get_history(self, request: web.Request) -> web.Response:
        channel = str(self._channel_id(request))
        limit = min(100, max(1, int(request.query.get("limit", "50"))))
        before = int(request.query.get("before", str(1 << 63)))
        after = int(request.query.get("after", "0"))
        found = sorted((p for p in self._state.payloads.values()
                        if p["channel_id"] == channel and not p["flags"] & EPHEMERAL
                        and after < int(p["id"]) < before),
                       key=lambda p: int(p["id"]), reverse=True)  # fmt: skip
        if "after" in request.query and "before" not in request.query:
            found = found[-limit:]
        return json_response(found[:limit])

    def _channel_message(self, request: web.Request) -> tuple[int, int]:
        channel_id = self._channel_id(request)
        message_id = request.match_info["message_id"]
        if not message_id.isdigit():
            raise Reject(error(404, "Unknown Message", 10008))
        payload = self._state.payloads.get(int(message_id))
        if (
            payload is None
            or payload["channel_id"] != str(channel_id)
            or payload["flags"] & EPHEMERAL
        ):
            raise Reject(error(404, "Unknown Message", 10008))
        return channel_id, int(message_id)

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = self._channel_id(request)
        body, files = await message_body(request)
        self._messages.check(body, files, creating=True)
        flags = int(body.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS)
        record = self._messages.create(channel_id, body, files, via="channel", flags=flags)
        await self._gateway.echo("MESSAGE_CREATE", record)
        return json_response(self._state.payloads[record.id])

    async def _get_message(self, request: web.Request) -> web.Response:
        _, message_id = self._channel_message(request)
        return json_response(self._state.payloads[message_id])

    async def _patch_message(self, request: web.Request) -> web.Response:
        _, message_id = self._channel_message(request)
        record = self._state.records.get(message_id)
        if record is None:
            return error(403, "Cannot edit a message authored by another user", 50005)
        body, files = await message_body(request)
        self._messages.check(body, files, creating=False)
        payload = self._messages.edit(record, body, files)
        await self._gateway.echo("MESSAGE_UPDATE", record)
        return json_response(payload)

    async def _delete_message(self, request: web.Request) -> web.Response:
        _, message_id = self._channel_message(request)
        record = self._state.records.get(message_id)
        if record is None:
            return error(403, "Missing Permissions", 50013)
        self._messages.delete(record)
        await self._gateway.echo("MESSAGE_DELETE", record)
        return web.Response(status=204)

    async def _post_typing(self, request: web.Request) -> web.Response:
        self._state.typing.append(self._channel_id(request))
        return web.Response(status=204)

    async def _put_reaction(self, request: web.Request) -> web.Response:
        channel_id, message_id = self._channel_message(request)
        reaction = (channel_id, message_id, request.match_info["emoji"])
        if reaction not in self._state.reactions:
            self._state.reactions.append(reaction)
        return web.Response(status=204)

    async def _delete_reaction(self, request: web.Request) -> web.Response:
        channel_id, message_id = self._channel_message(request)
        reaction = (channel_id, message_id, request.match_info["emoji"])
        if reaction in self._state.reactions:
            self._state.reactions.remove(reaction)
        return web.Response(status=204)
