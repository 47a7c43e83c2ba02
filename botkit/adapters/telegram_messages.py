"""Reading a Telegram message: whether it is for this bot (a DM, a command for it, an @mention
of it, a reply to it), its text without the mention, and the conversation it belongs to. The
text of a document or photo is its caption (with caption_entities for commands and mentions)."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Message
from telegram.constants import ChatType, MessageEntityType

from botkit.core.events import ChatKey

__all__ = ["ForBot", "for_bot", "mentions_me", "text_of"]


@dataclass(frozen=True, slots=True)
class ForBot:
    """A message addressed to this bot, as the router needs it."""

    chat: ChatKey
    text: str  # without the bot's @mention
    is_dm: bool
    is_command: bool
    mentioned: bool
    reply_to_bot: bool
    thread: int | None  # the forum topic, if any


def mentions_me(message: Message, username: str) -> tuple[bool, str]:
    """Whether message @mentions the bot username, and its text without the mention (only the
    mention and one space beside it: code keeps its newlines and indentation)."""
    text = text_of(message)
    me = f"@{username}".lower()
    # Entity offsets count UTF-16 code units (Bot API, MessageEntity), not characters.
    units = text.encode("utf-16-le")
    entities = message.entities if message.text is not None else message.caption_entities
    for entity in entities:
        if entity.type != MessageEntityType.MENTION:
            continue
        start, end = 2 * entity.offset, 2 * (entity.offset + entity.length)
        if units[start:end].decode("utf-16-le").lower() != me:
            continue
        before = units[:start].decode("utf-16-le")
        after = units[end:].decode("utf-16-le")
        if after.startswith(" ") and (not before or before.endswith((" ", "\n"))):
            after = after[1:]  # "@bot hi" is "hi", "ask @bot now" is "ask now"
        return True, before + after
    return False, text


def text_of(message: Message) -> str:
    """The message's text, or a document's or photo's caption."""
    return message.text if message.text is not None else (message.caption or "")


def for_bot(message: Message, username: str, bot_id: int) -> ForBot | None:
    """The text message read for the bot @username (id bot_id); None when it is for someone
    else: group chatter not addressed to the bot, or a command for another bot."""
    chat = message.chat
    is_dm = chat.type == ChatType.PRIVATE
    text = text_of(message)
    is_command = text.startswith("/")
    if is_command:
        head = text.split(maxsplit=1)[0]
        if "@" in head and head.split("@", 1)[1].lower() != username.lower():
            return None  # a command for another bot in this group
    mentioned, text = mentions_me(message, username)
    replied = message.reply_to_message
    reply_to_bot = bool(replied and replied.from_user and replied.from_user.id == bot_id)
    if not (is_dm or is_command or mentioned or reply_to_bot):
        return None  # group chatter not addressed to the bot
    thread = message.message_thread_id if message.is_topic_message else None
    # Named by the bot too: a user's DMs with two bots have the same chat id, and two bots
    # in one group see the same one; each bot has its own conversation there.
    key = f"{bot_id}/{chat.id}:{thread}" if thread else f"{bot_id}/{chat.id}"
    return ForBot(
        ChatKey("telegram", key), text, is_dm, is_command, mentioned, reply_to_bot, thread
    )
