"""Who may talk to the Telegram bot (the [telegram] allow and deny lists of chats and users),
and who may change a chat's settings: anyone in a DM, the configured owners, and group admins
(asked of Telegram with getChatMember)."""

from __future__ import annotations

import logging
from typing import Any

from telegram import User as TgUser
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

from botkit.config import TelegramConfig
from botkit.core.events import User

__all__ = ["TelegramAccess"]

log = logging.getLogger(__name__)


class TelegramAccess:
    """The [telegram] access lists, applied to a message's chat and sender."""

    def __init__(self, config: TelegramConfig) -> None:
        self.config = config

    def admits(self, chat_id: int, user_id: int) -> bool:
        """Whether user_id may use the bot in chat_id."""
        cfg = self.config
        if chat_id in cfg.deny_chat_ids or user_id in cfg.deny_user_ids:
            return False
        if cfg.allow_chat_ids and chat_id not in cfg.allow_chat_ids:
            return False
        return not (cfg.allow_user_ids and user_id not in cfg.allow_user_ids)

    async def user(
        self, bot: Any, sender: TgUser, chat_id: int, is_dm: bool, is_command: bool
    ) -> User:
        """The sender as botkit's User; group admins are looked up only for a command."""
        can_change = (
            await self._can_change_settings(bot, chat_id, sender.id, is_dm) if is_command else is_dm
        )
        # Internals are for the owners, and for group admins (DMs are anyone's).
        trusted = sender.id in self.config.settings_user_ids or (can_change and not is_dm)
        return User(str(sender.id), sender.full_name, can_change, trusted=trusted)

    async def _can_change_settings(self, bot: Any, chat_id: int, user_id: int, is_dm: bool) -> bool:
        if is_dm or user_id in self.config.settings_user_ids:
            return True
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("telegram: could not check admin status: %s", type(exc).__name__)
            return False
        return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
