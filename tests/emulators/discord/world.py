"""The emulated guild's objects as Discord sends them: users, members, the guild (with its
channels, threads and members over the gateway) and channels (DM channels too).

Shapes as documented in https://discord.com/developers/docs/resources/user,
https://discord.com/developers/docs/resources/guild and
https://discord.com/developers/docs/resources/channel, with the fields discord.py reads.
"""

from __future__ import annotations

from tests.emulators.discord.constants import GENERAL_ID, GUILD_ID, JSON, OWNER_ID
from tests.emulators.discord.state import EmulatorState

__all__ = ["World"]


class World:
    """Renders the state's users, guild and channels as JSON payloads."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    def user_json(self, user_id: int) -> JSON:
        """A user object (the bot's has `bot: true`)."""
        user = self._state.user(user_id)
        data: JSON = {
            "id": str(user.id), "username": user.username, "discriminator": "0",
            "global_name": user.global_name, "avatar": None, "avatar_decoration_data": None,
            "banner": None, "accent_color": None, "public_flags": 0, "flags": 0,
            "collectibles": None, "primary_guild": None, "clan": None,
        }  # fmt: skip
        if user.bot:
            data["bot"] = True
        return data

    def member_json(self, user_id: int, *, with_user: bool, permissions: bool = False) -> JSON:
        """A guild member object; with its user, and its permissions as interactions carry them."""
        state = self._state
        data: JSON = {
            "nick": None, "avatar": None, "banner": None, "roles": [str(r) for r in
            state.user(user_id).roles], "joined_at": state.joined_at, "premium_since": None,
            "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None, "avatar_decoration_data": None,
        }  # fmt: skip
        if with_user:
            data["user"] = self.user_json(user_id)
        if permissions:
            data["permissions"] = str(self._state.permissions_of(user_id))
        return data

    def mention_json(self, user_id: int, guild: bool) -> JSON:
        """A user in a message's `mentions` (with a partial member in a guild)."""
        data = self.user_json(user_id)
        if guild:
            data["member"] = self.member_json(user_id, with_user=False)
        return data

    def guild_json(self, *, gateway: bool) -> JSON:
        """The guild; for GUILD_CREATE (gateway=True) with its channels, threads and members."""
        data: JSON = {
            "id": str(GUILD_ID), "name": "Test guild", "icon": None, "icon_hash": None,
            "splash": None, "discovery_splash": None, "owner_id": str(OWNER_ID),
            "afk_channel_id": None, "afk_timeout": 300, "widget_enabled": False,
            "widget_channel_id": None, "verification_level": 0,
            "default_message_notifications": 1, "explicit_content_filter": 0,
            "roles": list(self._state.roles.values()), "emojis": [], "stickers": [], "features": [],
            "mfa_level": 0, "application_id": None, "system_channel_id": str(GENERAL_ID),
            "system_channel_flags": 0, "rules_channel_id": None, "max_presences": None,
            "max_members": 500000, "vanity_url_code": None, "description": None,
            "banner": None, "premium_tier": 0, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None,
            "max_video_channel_users": 25, "max_stage_video_channel_users": 50,
            "nsfw_level": 0, "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None, "incidents_data": None, "nsfw": False,
        }  # fmt: skip
        if gateway:
            channels = [c for c in self._state.channels.values() if c["type"] != 11]
            data.update({
                "unavailable": False, "large": False, "lazy": True,
                "member_count": len(self._state.users), "joined_at": self._state.joined_at,
                "members": [self.member_json(u, with_user=True) for u in self._state.users],
                "channels": channels,
                "threads": [c for c in self._state.channels.values() if c["type"] == 11],
                "presences": [], "voice_states": [], "stage_instances": [],
                "guild_scheduled_events": [], "soundboard_sounds": [],
                "embedded_activities": [], "application_command_counts": {},
            })  # fmt: skip
        return data

    def channel_json(self, channel_id: int, *, viewer: int | None = None) -> JSON:
        """A guild channel or a DM channel; with viewer's permissions, as interactions carry it."""
        if channel_id in self._state.dm_users:
            return {"id": str(channel_id), "type": 1, "last_message_id": None, "flags": 0,
                    "recipients": [self.user_json(self._state.dm_users[channel_id])]}  # fmt: skip
        data = {**self._state.channels[channel_id], "guild_id": str(GUILD_ID)}
        if viewer is not None:
            data["permissions"] = str(self._state.permissions_of(viewer))
        return data
