"""The messages of the emulated Discord: a user's message as the gateway carries it, and the
bot's messages, validated, created, edited and deleted as Discord would, with what each would
have pinged under its `allowed_mentions`.

Validation as in https://discord.com/developers/docs/resources/message#create-message: content
a string of at most 2,000 characters, at most 10 embeds, `allowed_mentions` a dict whose `parse`
excludes the matching id lists, no empty message (50006). Mentions as in
https://discord.com/developers/docs/resources/message#allowed-mentions-object: none sent means
Discord's default, which pings everyone mentioned and the replied-to author. Replies to a
deleted message fail unless `fail_if_not_exists` is false; only a bot's own message can be
edited; ephemerality is fixed when a message is created.
"""

from __future__ import annotations

import re
from typing import Literal

from tests.emulators.discord.constants import (
    APPLICATION_ID,
    BOT_ID,
    EPHEMERAL,
    GUILD_ID,
    JSON,
    LOADING,
    MAX_CONTENT,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
)
from tests.emulators.discord.records import InteractionRecord, MessageRecord
from tests.emulators.discord.rest import Reject, error, form_error
from tests.emulators.discord.state import EmulatorState, now
from tests.emulators.discord.world import World

__all__ = ["Messages"]

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)")


class Messages:
    """Creates, checks, edits and deletes the state's messages."""

    def __init__(self, state: EmulatorState, world: World) -> None:
        self._state = state
        self._world = world

    def from_user(
        self,
        content: str,
        *,
        channel_id: int,
        author_id: int,
        mentions_bot: bool,
        reply_to: int | None,
        attachments: list[JSON],
    ) -> JSON:
        """A user's message (kept, so that it can be replied to and fetched); its payload."""
        guild = channel_id in self._state.channels
        self._state.user(author_id)
        if mentions_bot and not re.search(rf"<@!?{BOT_ID}>", content):
            content = f"<@{BOT_ID}> {content}"
        mentioned = list(dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)))
        referenced: JSON | None = None
        if reply_to is not None:
            referenced = self._state.payloads.get(reply_to)
            if referenced is None:
                raise ValueError(f"no message {reply_to} to reply to")
            replied = int(referenced["author"]["id"])
            if replied != author_id and replied not in mentioned:
                mentioned.append(replied)
        message_id = self._state.snowflake()
        users = self._state.users
        payload: JSON = {
            "id": str(message_id), "type": 0, "channel_id": str(channel_id),
            "author": self._world.user_json(author_id), "content": content, "timestamp": now(),
            "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [self._world.mention_json(u, guild) for u in mentioned if u in users],
            "mention_roles": _ROLE_MENTION.findall(content), "attachments": attachments,
            "embeds": [],
            "pinned": False, "flags": 0, "components": [], "nonce": str(message_id),
        }  # fmt: skip
        if guild:
            payload["guild_id"] = str(GUILD_ID)
            payload["member"] = self._world.member_json(author_id, with_user=False)
        if referenced is not None:
            payload["type"] = 19
            payload["message_reference"] = self._reference_json(referenced)
            payload["referenced_message"] = self._as_referenced(referenced)
        self._state.payloads[message_id] = payload
        return payload

    def check(self, body: JSON, files: list[str], *, creating: bool) -> None:
        """Refuse a message body (and its files) Discord would refuse, with its error."""
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise form_error(["content"], "BASE_TYPE_STRING", "Must be a string.")
        if content is not None and len(content) > MAX_CONTENT:
            raise form_error(
                ["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        if len(body.get("embeds") or []) > 10:
            raise form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer.")
        allowed = body.get("allowed_mentions")
        if allowed is not None:
            if not isinstance(allowed, dict):
                raise form_error(["allowed_mentions"], "DICT_TYPE_CONVERT", "Not a dict.")
            parse = allowed.get("parse") or []
            for kind in ("users", "roles"):
                if kind in parse and allowed.get(kind):
                    raise form_error(
                        ["allowed_mentions"], "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                        f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                    )  # fmt: skip
        keys = ("embeds", "sticker_ids", "components", "poll", "attachments")
        if creating and not content and not files and not any(body.get(k) for k in keys):
            raise Reject(error(400, "Cannot send an empty message", 50006))

    def _pings(
        self, content: str, allowed: JSON | None, replied_author: int | None
    ) -> tuple[bool, list[int], list[int]]:
        """(@everyone/@here pings, users pinged, roles pinged) under allowed_mentions."""
        if allowed is None:  # Discord's default: parse everything, ping the replied user
            parse, users, roles, replied_user = {"everyone", "users", "roles"}, set(), set(), True
        else:
            parse = set(allowed.get("parse") or [])
            users = {int(u) for u in allowed.get("users") or []}
            roles = {int(r) for r in allowed.get("roles") or []}
            replied_user = bool(allowed.get("replied_user", False))
        everyone = bool(_EVERYONE.search(content)) and "everyone" in parse
        pinged = [u for u in dict.fromkeys(int(m) for m in _USER_MENTION.findall(content))
                  if "users" in parse or u in users]  # fmt: skip
        if replied_author is not None and replied_user and replied_author not in pinged:
            pinged.append(replied_author)
        role_ids = [r for r in dict.fromkeys(int(m) for m in _ROLE_MENTION.findall(content))
                    if "roles" in parse or r in roles]  # fmt: skip
        return everyone, [u for u in pinged if u != BOT_ID], role_ids

    def _apply_mentions(
        self, record: MessageRecord, payload: JSON, allowed: JSON | None, replied: int | None
    ) -> None:
        everyone, users, roles = self._pings(record.content, allowed, replied)
        payload["mention_everyone"] = everyone
        payload["mentions"] = [self._world.user_json(u) for u in users if u in self._state.users]
        payload["mention_roles"] = [str(r) for r in roles]
        record.allowed_mentions = allowed
        if (everyone or users or roles) and not record.ephemeral:
            record.would_ping = True

    def create(
        self,
        channel_id: int,
        body: JSON,
        files: list[str],
        *,
        via: Literal["channel", "followup", "original"],
        flags: int,
        interaction: InteractionRecord | None = None,
    ) -> MessageRecord:
        """Create a message by the bot (validated already) and its payload."""
        message_id = self._state.snowflake()
        content = body.get("content") or ""
        referenced: JSON | None = None
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            referenced = self._state.payloads.get(int(reference["message_id"]))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise form_error(
                    ["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        record = MessageRecord(
            id=message_id, channel_id=channel_id, content=content, via=via,
            reference=int(referenced["id"]) if referenced else None,
            ephemeral=bool(flags & EPHEMERAL), loading=bool(flags & LOADING),
            interaction_id=interaction.id if interaction else None, history=[content],
            attachments=files,
        )  # fmt: skip
        kind = 20 if via == "original" else 19 if referenced else 0
        payload: JSON = {
            "id": str(message_id), "type": kind, "channel_id": str(channel_id),
            "author": self._world.user_json(BOT_ID), "content": content, "timestamp": now(),
            "edited_timestamp": None, "tts": bool(body.get("tts", False)),
            "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [self._attachment_json(name) for name in files],
            "embeds": body.get("embeds") or [], "pinned": False, "flags": flags,
            "components": body.get("components") or [],
        }  # fmt: skip
        if body.get("nonce") is not None:
            payload["nonce"] = body["nonce"]
        if referenced is not None:
            payload["message_reference"] = self._reference_json(referenced)
            payload["referenced_message"] = self._as_referenced(referenced)
        if interaction is not None:
            payload["webhook_id"] = str(APPLICATION_ID)
            payload["application_id"] = str(APPLICATION_ID)
            payload["interaction_metadata"] = self._interaction_metadata(interaction)
        replied = int(referenced["author"]["id"]) if referenced else None
        allowed = body.get("allowed_mentions")
        self._apply_mentions(
            record, payload, allowed if isinstance(allowed, dict) else None, replied
        )
        self._state.payloads[message_id] = payload
        self._state.records[message_id] = record
        self._state.messages.append(record)
        return record

    def edit(self, record: MessageRecord, body: JSON, files: list[str]) -> JSON:
        """Apply an edit (validated already) to one of the bot's messages; the new payload."""
        payload = self._state.payloads[record.id]
        content = (body.get("content") or "") if "content" in body else record.content
        embeds = (body.get("embeds") or []) if "embeds" in body else payload["embeds"]
        attachments = payload["attachments"]
        if "attachments" in body or files:
            kept = [
                a
                for a in payload["attachments"]
                if any(str(b.get("id")) == a["id"] for b in body.get("attachments") or [])
            ]
            attachments = kept + [self._attachment_json(name) for name in files]
        components = payload["components"]
        if "components" in body:
            components = body.get("components") or []
        if not (content or embeds or attachments or components):
            raise Reject(error(400, "Cannot send an empty message", 50006))
        flags = payload["flags"] & ~LOADING
        if "flags" in body:
            keep = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS  # ephemerality is fixed at creation
            flags = (flags & EPHEMERAL) | (int(body["flags"] or 0) & keep)
        payload.update(content=content, embeds=embeds, attachments=attachments,
                       components=components, flags=flags, edited_timestamp=now())  # fmt: skip
        record.content = content
        record.loading = False
        record.edits += 1
        record.history.append(content)
        record.attachments = [a["filename"] for a in attachments]
        allowed = body.get("allowed_mentions")
        self._apply_mentions(record, payload, allowed if isinstance(allowed, dict) else None, None)
        return payload

    def delete(self, record: MessageRecord) -> None:
        """The bot's message is gone: fetches, edits and replies to it get 10008."""
        record.deleted = True
        self._state.payloads.pop(record.id, None)

    def _attachment_json(self, name: str) -> JSON:
        attachment_id = self._state.snowflake()
        url = f"{self._state.rest_base}/attachments/{attachment_id}/{name}"
        return {"id": str(attachment_id), "filename": name, "size": 0, "url": url,
                "proxy_url": url, "content_type": "application/octet-stream"}  # fmt: skip

    def _interaction_metadata(self, interaction: InteractionRecord) -> JSON:
        data: JSON = {
            "id": interaction.id, "type": 2, "name": interaction.name, "command_type": 1,
            "user": self._world.user_json(interaction.user_id),
            "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
        }  # fmt: skip
        if interaction.original is not None:
            data["original_response_message_id"] = str(interaction.original.id)
        return data

    def _reference_json(self, referenced: JSON) -> JSON:
        data: JSON = {"type": 0, "message_id": referenced["id"],
                      "channel_id": referenced["channel_id"]}  # fmt: skip
        if int(referenced["channel_id"]) in self._state.channels:
            data["guild_id"] = str(GUILD_ID)
        return data

    @staticmethod
    def _as_referenced(payload: JSON) -> JSON:
        skip = {"referenced_message", "member", "guild_id"}
        return {k: v for k, v in payload.items() if k not in skip}
