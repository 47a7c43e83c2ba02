"""Application commands: their sync (GET and PUT, global and per guild) as Discord validates
and stores them, and a stored command's options as an INTERACTION_CREATE carries them.

As https://discord.com/developers/docs/interactions/application-commands: a name has 1 to 32
letters, digits, `-` or `_` (a chat-input command's in lower case, with a description of 1 to
100 characters), names are unique per type, a PUT replaces the whole set (a command that stays
keeps its id), another application's commands are 50001 Missing Access and an unknown guild
10004.
Options as https://discord.com/developers/docs/interactions/application-commands#application-command-object-application-command-option-structure:
at most 25, each a known type with a name like a command's and a 1-100 character
description, names unique, required ones before optional ones ("Required options must be
placed before non-required options", 50035), min_value/max_value only on INTEGER and NUMBER,
min_length/max_length (0 to 6000) only on STRING, at most 25 choices only on STRING, INTEGER
and NUMBER. (Discord documents these rules but not the codes of every refusal; the codes here
follow its naming.)
Option types (ATTACHMENT is 11:
https://discord.com/developers/docs/interactions/application-commands#application-command-object-application-command-option-type)
and the `resolved` users, members, roles, channels and attachments as in
https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-object-resolved-data-structure.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.emulators.discord.constants import APPLICATION_ID, BOT_ID, GUILD_ID, JSON
from tests.emulators.discord.rest import (
    Reject,
    RestRouter,
    error,
    form_error,
    json_response,
    read_json,
)
from tests.emulators.discord.state import EmulatorState
from tests.emulators.discord.world import World

__all__ = ["Commands"]

_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")
_OPTION_TYPES = {"SUB_COMMAND": 1, "SUB_COMMAND_GROUP": 2, "STRING": 3, "INTEGER": 4,
                 "BOOLEAN": 5, "USER": 6, "CHANNEL": 7, "ROLE": 8, "MENTIONABLE": 9,
                 "NUMBER": 10, "ATTACHMENT": 11}  # fmt: skip


def _infer_option_type(value: Any) -> int:
    if isinstance(value, bool):
        return _OPTION_TYPES["BOOLEAN"]
    if isinstance(value, int):
        return _OPTION_TYPES["INTEGER"]
    if isinstance(value, float):
        return _OPTION_TYPES["NUMBER"]
    if isinstance(value, dict):
        return _OPTION_TYPES["SUB_COMMAND"]
    return _OPTION_TYPES["STRING"]


class Commands:
    """The registered application commands, and the routes that sync them."""

    def __init__(self, state: EmulatorState, world: World) -> None:
        self._state = state
        self._world = world

    def register(self, rest: RestRouter, app: web.Application) -> None:
        """Add the command routes to app."""
        add = rest.add
        add(app, "GET", "/applications/{app_id}/commands", self._get_commands)
        add(app, "PUT", "/applications/{app_id}/commands", self._put_commands)
        add(app, "GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands)
        add(app, "PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands)

    def _command_scope(self, request: web.Request) -> int | None:
        """The guild id of a command route (None: global), after checking the ids."""
        if request.match_info["app_id"] != str(APPLICATION_ID):
            raise Reject(error(403, "Missing Access", 50001))
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return None
        if guild_id != str(GUILD_ID):
            raise Reject(error(404, "Unknown Guild", 10004))
        return GUILD_ID

    async def _get_commands(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        if guild_id is None:
            return json_response(self._state.global_commands)
        return json_response(self._state.guild_commands.get(guild_id, []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        body = await read_json(request)
        if not isinstance(body, list):
            raise form_error([], "BASE_TYPE_ARRAY", "Must be an array.")
        previous = (
            self._state.global_commands
            if guild_id is None
            else self._state.guild_commands.get(guild_id, [])
        )
        stored: list[JSON] = []
        for index, command in enumerate(body):
            self._check_command(index, command, stored)
            kind = command.get("type", 1)
            same = next((c for c in previous if c["name"] == command["name"]
                         and c.get("type", 1) == kind), None)  # fmt: skip
            entry: JSON = {
                "type": 1, "description": "", "options": [], "default_member_permissions": None,
                "dm_permission": True, "nsfw": False, "contexts": None, "integration_types": [0],
            }  # fmt: skip
            entry.update({k: v for k, v in command.items()
                          if k not in ("id", "application_id", "version", "guild_id")})  # fmt: skip
            entry["id"] = same["id"] if same else str(self._state.snowflake())
            entry["application_id"] = str(APPLICATION_ID)
            entry["version"] = str(self._state.snowflake())
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        if guild_id is None:
            self._state.global_commands = stored
        else:
            self._state.guild_commands[guild_id] = stored
        self._state.sync_count += 1
        return json_response(stored)

    def _check_command(self, index: int, command: Any, stored: list[JSON]) -> None:
        where = [str(index)]
        if not isinstance(command, dict):
            raise form_error(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        name, kind = command.get("name"), command.get("type", 1)
        if not isinstance(name, str) or not _COMMAND_NAME.match(name):
            raise form_error([*where, "name"], "APPLICATION_COMMAND_INVALID_NAME",
                                   "Command name is invalid")  # fmt: skip
        if kind == 1:
            if name != name.lower():
                raise form_error([*where, "name"], "APPLICATION_COMMAND_INVALID_NAME",
                                       "Command name is invalid")  # fmt: skip
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                raise form_error([*where, "description"], "BASE_TYPE_BAD_LENGTH",
                                       "Must be between 1 and 100 in length.")  # fmt: skip
            self._check_options([*where, "options"], command.get("options"))
        if any(c["name"] == name and c.get("type", 1) == kind for c in stored):
            raise form_error(where, "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                   f"Application command names must be unique: {name}")  # fmt: skip

    def _check_options(self, where: list[str], options: Any) -> None:
        if options is None:
            return
        if not isinstance(options, list):
            raise form_error(where, "BASE_TYPE_ARRAY", "Must be an array.")
        if len(options) > 25:
            raise form_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        names: set[str] = set()
        optional_seen = False
        for index, option in enumerate(options):
            at = [*where, str(index)]
            kind, name = option.get("type"), option.get("name")
            if kind not in _OPTION_TYPES.values():
                kinds = sorted(_OPTION_TYPES.values())
                raise form_error([*at, "type"], "BASE_TYPE_CHOICES",
                                 f"Value must be one of {kinds}.")  # fmt: skip
            if not isinstance(name, str) or not _COMMAND_NAME.match(name) or name != name.lower():
                raise form_error([*at, "name"], "APPLICATION_COMMAND_INVALID_NAME",
                                 "Command name is invalid")  # fmt: skip
            description = option.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                raise form_error([*at, "description"], "BASE_TYPE_BAD_LENGTH",
                                 "Must be between 1 and 100 in length.")  # fmt: skip
            if name in names:
                raise form_error(at, "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                                 "Option names must be unique")  # fmt: skip
            names.add(name)
            if kind in (1, 2):
                self._check_options([*at, "options"], option.get("options"))
                continue
            required = bool(option.get("required"))
            if required and optional_seen:
                raise form_error(
                    at, "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )  # fmt: skip
            optional_seen = optional_seen or not required
            self._check_option_limits(at, kind, option)

    @staticmethod
    def _check_option_limits(at: list[str], kind: int, option: JSON) -> None:
        allowed = {"min_value": (4, 10), "max_value": (4, 10), "min_length": (3,),
                   "max_length": (3,), "choices": (3, 4, 10)}  # fmt: skip
        for key, kinds in allowed.items():
            if option.get(key) is not None and kind not in kinds:
                raise form_error([*at, key], "APPLICATION_COMMAND_OPTION_INVALID_FIELD",
                                 f"{key} is not allowed for an option of type {kind}")  # fmt: skip
        for key in ("min_length", "max_length"):
            value = option.get(key)
            if value is not None and not 0 <= int(value) <= 6000:
                raise form_error([*at, key], "NUMBER_TYPE_MAX",
                                 "int value should be between 0 and 6000.")  # fmt: skip
        if len(option.get("choices") or []) > 25:
            raise form_error([*at, "choices"], "BASE_TYPE_MAX_LENGTH",
                             "Must be 25 or fewer in length.")  # fmt: skip

    def find(self, name: str, guild: bool) -> tuple[JSON | None, bool]:
        """The chat-input command name (the guild's first, then the global one), and whether
        it is the guild's."""
        if guild:
            for command in self._state.guild_commands.get(GUILD_ID, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, True
        for command in self._state.global_commands:
            if command["name"] == name and command.get("type", 1) == 1:
                return command, False
        return None, False

    def build_options(
        self, definitions: list[JSON], given: dict[str, Any], resolved: JSON, guild: bool
    ) -> list[JSON]:
        """The given option values typed as the definitions say (a nested dict: a subcommand's
        options; an ATTACHMENT's value: an attachment object from `Cdn.add`); the users,
        members, roles, channels and attachments they name go into resolved."""
        built: list[JSON] = []
        for name, value in given.items():
            definition = next((d for d in definitions if d.get("name") == name), None)
            kind = int(definition["type"]) if definition else _infer_option_type(value)
            if kind in (1, 2):
                nested = (definition or {}).get("options") or []
                inner = value if isinstance(value, dict) else {}
                options = self.build_options(nested, inner, resolved, guild)
                built.append({"name": name, "type": kind, "options": options})
                continue
            built.append({"name": name, "type": kind,
                          "value": self._option_value(kind, value, resolved, guild)})  # fmt: skip
        return built

    def _option_value(self, kind: int, value: Any, resolved: JSON, guild: bool) -> Any:
        if kind == 3:
            return str(value)
        if kind == 4:
            return int(value)
        if kind == 5:
            return bool(value)
        if kind == 10:
            return value if isinstance(value, int | float) else float(value)
        if kind == 11:  # value: an attachment object from Cdn.add
            resolved.setdefault("attachments", {})[str(value["id"])] = value
            return str(value["id"])
        snowflake = int(value)
        if kind == 8 or (kind == 9 and snowflake in self._state.roles):
            resolved.setdefault("roles", {})[str(snowflake)] = self._state.roles[snowflake]
        elif kind == 7:
            channel = self._world.channel_json(snowflake, viewer=BOT_ID)
            resolved.setdefault("channels", {})[str(snowflake)] = channel
        elif kind in (6, 9):
            resolved.setdefault("users", {})[str(snowflake)] = self._world.user_json(snowflake)
            if guild:
                member = self._world.member_json(snowflake, with_user=False, permissions=True)
                resolved.setdefault("members", {})[str(snowflake)] = member
        return str(snowflake)
