"""Who may talk to the Discord bot, and who may change a chat's settings, by the [discord]
allow and deny lists of users, roles and channels.

A denied role must not be bypassed by a DM: with role lists configured, a DM sender's roles are
looked up in the bot's guilds, and a failed lookup refuses the message (fail closed).
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from botkit.config import DiscordConfig
from botkit.core.events import User

__all__ = ["DiscordAccess"]

log = logging.getLogger(__name__)


class DiscordAccess:
    """The [discord] access lists, applied to a message's or an interaction's author."""

    def __init__(self, config: DiscordConfig) -> None:
        self.config = config

    async def admits(
        self, client: discord.Client | None, user: Any, channel_id: int, is_dm: bool
    ) -> bool:
        """Whether user may use the bot in this channel (False when their roles are unknown)."""
        roles = await self._roles(client, user, is_dm)
        return roles is not None and self._allowed(user.id, roles, channel_id)

    async def _roles(
        self, client: discord.Client | None, user: Any, is_dm: bool
    ) -> list[int] | None:
        """The user's role ids. In a DM there are none on the message, so with role lists
        configured they are looked up in the bot's guilds (a denied role must not be bypassed
        by a DM); None when that lookup failed (the caller refuses: fail closed)."""
        if not is_dm:
            return [r.id for r in getattr(user, "roles", [])]
        cfg = self.config
        if not (cfg.deny_role_ids or cfg.allow_role_ids) or client is None:
            return []
        roles: list[int] = []
        for guild in client.guilds:
            member = guild.get_member(user.id)
            if member is None:
                try:
                    member = await guild.fetch_member(user.id)
                except discord.NotFound:
                    continue  # not in this guild
                except discord.HTTPException as exc:
                    log.warning("discord: could not look up a DM sender's roles: %s", exc)
                    return None
            roles += [r.id for r in member.roles]
        return roles

    def _allowed(self, user_id: int, role_ids: list[int], channel_id: int) -> bool:
        cfg = self.config
        if user_id in cfg.deny_user_ids or channel_id in cfg.deny_channel_ids:
            return False
        if any(r in cfg.deny_role_ids for r in role_ids):
            return False
        if cfg.allow_user_ids and user_id not in cfg.allow_user_ids:
            return False
        if cfg.allow_role_ids and not any(r in cfg.allow_role_ids for r in role_ids):
            return False
        return not (cfg.allow_channel_ids and channel_id not in cfg.allow_channel_ids)

    def user(self, user: Any, manage_guild: bool, is_dm: bool) -> User:
        """Everyone changes their DM's settings; internals are for owners and managers only."""
        manager = self._is_manager(user, manage_guild)
        return User(str(user.id), user.display_name, is_dm or manager, trusted=manager)

    def _is_manager(self, user: Any, manage_guild: bool) -> bool:
        if manage_guild or user.id in self.config.settings_user_ids:
            return True
        roles = [r.id for r in getattr(user, "roles", [])]
        return any(r in self.config.settings_role_ids for r in roles)
