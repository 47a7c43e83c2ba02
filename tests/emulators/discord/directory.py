"""The REST routes that look things up: where the gateway is, the bot's user and application,
other users, DM channels, and the guild with its channels and members.

As https://discord.com/developers/docs/resources/user, .../resources/application,
.../resources/guild and .../events/gateway#get-gateway-bot: an unknown user is 10013, an
unknown guild 10004, an unknown member 10007; GET /gateway needs no token.
"""

from __future__ import annotations

from aiohttp import web

from tests.emulators.discord.constants import (
    APPLICATION_ID,
    BOT_ID,
    BOT_NAME,
    GUILD_ID,
    JSON,
    OWNER_ID,
)
from tests.emulators.discord.rest import RestRouter, error, form_error, json_response, read_json
from tests.emulators.discord.state import EmulatorState
from tests.emulators.discord.world import World

__all__ = ["Directory"]


class Directory:
    """Handlers for /gateway, /users, /applications/@me and /guilds."""

    def __init__(self, state: EmulatorState, world: World) -> None:
        self._state = state
        self._world = world

    def register(self, rest: RestRouter, app: web.Application) -> None:
        """Add the look-up routes to app."""
        add = rest.add
        add(app, "GET", "/gateway", self._get_gateway, auth=False)
        add(app, "GET", "/gateway/bot", self._get_gateway_bot)
        add(app, "GET", "/users/@me", self._get_me)
        add(app, "POST", "/users/@me/channels", self._create_dm)
        add(app, "GET", "/users/{user_id}", self._get_user)
        add(app, "GET", "/oauth2/applications/@me", self._get_application)
        add(app, "GET", "/applications/@me", self._get_application)
        add(app, "GET", "/guilds/{guild_id}", self._get_guild)
        add(app, "GET", "/guilds/{guild_id}/channels", self._get_guild_channels)
        add(app, "GET", "/guilds/{guild_id}/members/{user_id}", self._get_member)

    async def _get_gateway(self, _request: web.Request) -> web.Response:
        return json_response({"url": self._state.gateway_url})

    async def _get_gateway_bot(self, _request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": max(0, 1000 - self._state.identify_count),
                 "reset_after": 86_400_000, "max_concurrency": 1}  # fmt: skip
        return json_response(
            {"url": self._state.gateway_url, "shards": 1, "session_start_limit": limit}
        )

    async def _get_me(self, _request: web.Request) -> web.Response:
        user = self._world.user_json(BOT_ID)
        user.update({"verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"})
        return json_response(user)

    async def _get_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if not user_id.isdigit() or int(user_id) not in self._state.users:
            return error(404, "Unknown User", 10013)
        return json_response(self._world.user_json(int(user_id)))

    async def _create_dm(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        recipient = body.get("recipient_id") if isinstance(body, dict) else None
        if (
            recipient is None
            or not str(recipient).isdigit()
            or int(recipient) not in self._state.users
        ):
            raise form_error(["recipient_id"], "NUMBER_TYPE_COERCE", "Unknown user.")
        return json_response(self._world.channel_json(self._state.dm_channel_id(int(recipient))))

    async def _get_application(self, _request: web.Request) -> web.Response:
        return json_response(self._application_json())

    async def _get_guild(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(GUILD_ID):
            return error(404, "Unknown Guild", 10004)
        return json_response(self._world.guild_json(gateway=False))

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(GUILD_ID):
            return error(404, "Unknown Guild", 10004)
        return json_response([self._world.channel_json(c) for c, d in self._state.channels.items()
                           if d["type"] != 11])  # fmt: skip

    async def _get_member(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(GUILD_ID):
            return error(404, "Unknown Guild", 10004)
        user_id = request.match_info["user_id"]
        if not user_id.isdigit() or int(user_id) not in self._state.users:
            return error(404, "Unknown Member", 10007)
        return json_response(self._world.member_json(int(user_id), with_user=True))

    def _application_json(self) -> JSON:
        user_json = self._world.user_json
        return {
            "id": str(APPLICATION_ID), "name": BOT_NAME, "icon": None, "description": "",
            "summary": "", "type": None, "hook": True, "bot_public": True,
            "bot_require_code_grant": False, "verify_key": "0" * 64, "flags": 0,
            "owner": user_json(OWNER_ID), "team": None, "bot": user_json(BOT_ID),
            "rpc_origins": [], "redirect_uris": [], "interactions_endpoint_url": None,
            "role_connections_verification_url": None, "tags": [],
            "integration_types_config": {"0": {}}, "approximate_guild_count": 1,
            "terms_of_service_url": None, "privacy_policy_url": None,
        }  # fmt: skip
