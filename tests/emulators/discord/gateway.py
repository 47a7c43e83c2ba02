"""The gateway: a websocket of JSON text frames with HELLO, heartbeats, IDENTIFY and RESUME,
and the dispatches of every event to the session (shard) it belongs to.

IDENTIFY checks the token (4004) and validates intents (4013) and shard (4010), then sends
READY (resume_gateway_url is this server) and, on the guild's shard, GUILD_CREATE. Every
session numbers and keeps its dispatches, so RESUME replays what the client missed, including
what was dispatched while it was disconnected; unknown sessions get INVALID_SESSION. The guild
lives on `(GUILD_ID >> 22) % shard_count`, DMs on shard 0. Intents are honoured: no
MESSAGE_CREATE without GUILD_MESSAGES / DIRECT_MESSAGES, and guild messages that do not
mention the bot lose their content without MESSAGE_CONTENT. Like Discord, the bot's own
non-ephemeral messages come back over the gateway (MESSAGE_CREATE / UPDATE / DELETE). Other
frames close the connection as Discord does: not JSON 4002, anything but a heartbeat before
IDENTIFY 4003, a second IDENTIFY or RESUME 4005, an unknown opcode 4001.

Sources: https://discord.com/developers/docs/events/gateway (connection lifecycle, sharding,
intents), https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway
(opcodes and close codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.emulators.discord.constants import (
    API_VERSION,
    APPLICATION_ID,
    BOT_ID,
    GUILD_ID,
    HEARTBEAT_INTERVAL,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    JSON,
)
from tests.emulators.discord.records import MessageRecord
from tests.emulators.discord.state import EmulatorState
from tests.emulators.discord.world import World

__all__ = ["Gateway", "Session"]


@dataclass
class Session:
    """One gateway session: its shard, intents, and every dispatch numbered and kept (for
    RESUME); `ws` is its connection while one is up."""

    id: str
    shard: tuple[int, int]
    intents: int
    sent_shard: bool
    seq: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)  # (s, frame as sent)
    ws: web.WebSocketResponse | None = None
    ready: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Gateway:
    """Serves /gateway and dispatches events to the clients' sessions."""

    def __init__(self, state: EmulatorState, world: World) -> None:
        self._state = state
        self._world = world
        self._sessions: dict[str, Session] = {}
        self._live: dict[int, Session] = {}  # shard id -> its latest session
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def ready(self) -> bool:
        """A client identified, got READY (and GUILD_CREATE on its shard) and is connected."""
        return bool(self._live) and all(s.ready and s.ws is not None for s in self._live.values())

    @property
    def connected(self) -> bool:
        """Some shard's gateway connection is up and identified or resumed."""
        return any(s.ws is not None for s in self._live.values())

    def target(self, guild: bool) -> Session:
        """The live session of the guild's shard (guild=False: shard 0, where DMs go)."""
        if not self._live:
            raise RuntimeError("no gateway session: connect a client first")
        count = next(iter(self._live.values())).shard[1]
        shard = (GUILD_ID >> 22) % count if guild else 0
        try:
            return self._live[shard]
        except KeyError:
            raise RuntimeError(f"shard {shard} has no gateway session") from None

    async def dispatch_to(self, session: Session, event: str, data: JSON) -> None:
        """Dispatch an event in session (numbered, kept for RESUME, sent when connected)."""
        async with session.lock:
            await self._emit(session, event, data)

    async def dispatch(self, event: str, data: JSON, *, guild: bool = True) -> None:
        """Dispatch a raw event to the shard of the guild (guild=False: shard 0)."""
        await self.dispatch_to(self.target(guild), event, data)
        await self._state.notify()

    async def user_message(self, session: Session, payload: JSON, *, guild: bool) -> None:
        """MESSAGE_CREATE for a user's message, as the session's intents let it see it."""
        if not self._subscribed(session, guild):
            return
        visible = payload
        mentioned = any(int(u["id"]) == BOT_ID for u in payload["mentions"])
        if guild and not session.intents & INTENT_MESSAGE_CONTENT and not mentioned:
            visible = {**payload, "content": "", "embeds": [], "attachments": [],
                       "components": []}  # fmt: skip
        await self.dispatch_to(session, "MESSAGE_CREATE", visible)

    async def drop_connection(self, *, shard_id: int | None = None, code: int = 4000) -> None:
        """Close gateway connections with a resumable code; dispatches wait for the RESUME."""
        sockets = []
        for shard, session in list(self._live.items()):
            if shard_id is not None and shard != shard_id:
                continue
            async with session.lock:
                if session.ws is not None:
                    sockets.append(session.ws)
                    session.ws = None
        for ws in sockets:
            await ws.close(code=code, message=b"Unknown error.")
        await self._state.notify()

    async def request_reconnect(self, *, shard_id: int = 0) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        session = self._live[shard_id]
        if session.ws is not None:
            await self._send(session.ws, {"op": 7, "d": None, "s": None, "t": None})

    async def close_all(self) -> None:
        """Close every gateway connection (1001 Going away), as on shutdown."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"Going away.")

    async def invalidate_session(self, *, shard_id: int = 0, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; unless resumable, the session is forgotten."""
        session = self._live[shard_id]
        if not resumable:
            self._sessions.pop(session.id, None)
        if session.ws is not None:
            await self._send(session.ws, {"op": 9, "d": resumable, "s": None, "t": None})

    def _ready_json(self, session: Session, owns_guild: bool) -> JSON:
        user = self._world.user_json(BOT_ID)
        user.update({"verified": True, "mfa_enabled": False, "email": None})
        data: JSON = {
            "v": API_VERSION, "user": user, "user_settings": {}, "session_type": "normal",
            "session_id": session.id, "resume_gateway_url": self._state.gateway_url,
            "guilds": [{"id": str(GUILD_ID), "unavailable": True}] if owns_guild else [],
            "private_channels": [], "relationships": [], "presences": [],
            "guild_join_requests": [], "geo_ordered_rtc_regions": ["emulated"], "auth": {},
            "application": {"id": str(APPLICATION_ID), "flags": 0},
            "_trace": ["discord-emulator"],
        }  # fmt: skip
        if session.sent_shard:
            data["shard"] = list(session.shard)
        return data

    @staticmethod
    def _subscribed(session: Session, guild: bool) -> bool:
        return bool(session.intents & (INTENT_GUILD_MESSAGES if guild else INTENT_DIRECT_MESSAGES))

    @staticmethod
    async def _send(ws: web.WebSocketResponse, frame: JSON | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(text)

    async def _emit(self, session: Session, event: str, data: JSON) -> None:
        """Number, keep and (when connected) send a dispatch; hold session.lock."""
        session.seq += 1
        text = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.events.append((session.seq, text))
        self._state.dispatched.append(event)
        if session.ws is not None:
            await self._send(session.ws, text)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """One client's gateway connection, from HELLO until it closes."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        session: Session | None = None
        try:
            await self._send(ws, {"op": 10, "s": None, "t": None,
                                  "d": {"heartbeat_interval": HEARTBEAT_INTERVAL,
                                        "_trace": ["discord-emulator"]}})  # fmt: skip
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                try:
                    frame = json.loads(message.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                session = await self._on_frame(ws, session, op, frame.get("d"))
                await self._state.notify()
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            await self._state.notify()
        return ws

    async def _on_frame(
        self, ws: web.WebSocketResponse, session: Session | None, op: Any, data: Any
    ) -> Session | None:
        if op == 1:
            self._state.heartbeats += 1
            await self._send(ws, {"op": 11, "d": None, "s": None, "t": None})
            return session
        if op in (2, 6):
            if session is not None:
                await ws.close(code=4005, message=b"Already authenticated.")
                return session
            if not isinstance(data, dict) or data.get("token") != self._state.token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return None
            return await (self._identify(ws, data) if op == 2 else self._resume(ws, data))
        if session is None:
            await ws.close(code=4003, message=b"Not authenticated.")
            return None
        if op == 3:
            self._state.presences.append(data)
        elif op == 8:
            await self._request_members(session, data)
        elif op != 4:  # voice state updates are accepted and ignored
            await ws.close(code=4001, message=b"Unknown opcode.")
        return session

    async def _identify(self, ws: web.WebSocketResponse, data: JSON) -> Session | None:
        intents = data.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0:
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return None
        shard = data.get("shard", [0, 1])
        valid = (
            isinstance(shard, list)
            and len(shard) == 2
            and all(isinstance(n, int) for n in shard)
            and 0 <= shard[0] < shard[1]
        )
        if not valid:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        self._state.identify_count += 1
        self._state.intents = intents
        if isinstance(data.get("presence"), dict):
            self._state.presences.append(data["presence"])
        session = Session(id=secrets.token_hex(16), shard=(shard[0], shard[1]),
                           intents=intents, sent_shard="shard" in data)  # fmt: skip
        self._sessions[session.id] = session
        self._live[shard[0]] = session
        owns_guild = (GUILD_ID >> 22) % shard[1] == shard[0]
        async with session.lock:
            session.ws = ws
            await self._emit(session, "READY", self._ready_json(session, owns_guild))
            if owns_guild:
                await self._emit(session, "GUILD_CREATE", self._world.guild_json(gateway=True))
            session.ready = True
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> Session | None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None:
            self._state.invalid_sessions += 1
            await self._send(ws, {"op": 9, "d": False, "s": None, "t": None})
            return None
        seq = data.get("seq")
        if not isinstance(seq, int):
            seq = 0  # null: replay everything
        async with session.lock:
            session.ws = ws
            for number, text in session.events:
                if number > seq:
                    await self._send(ws, text)
            await self._emit(session, "RESUMED", {"_trace": ["discord-emulator"]})
        self._state.resume_count += 1
        self._live[session.shard[0]] = session
        return session

    async def _request_members(self, session: Session, data: Any) -> None:
        if not isinstance(data, dict) or str(data.get("guild_id")) != str(GUILD_ID):
            return
        wanted = data.get("user_ids")
        query = str(data.get("query") or "").lower()
        limit = int(data.get("limit") or 0)
        if wanted is not None:
            ids = [int(u) for u in (wanted if isinstance(wanted, list) else [wanted])]
            found = [u for u in ids if u in self._state.users]
            not_found = [str(u) for u in ids if u not in self._state.users]
        else:
            found = [u.id for u in self._state.users.values() if u.username.startswith(query)]
            not_found = []
        if limit:
            found = found[:limit]
        chunk: JSON = {
            "guild_id": str(GUILD_ID), "chunk_index": 0, "chunk_count": 1,
            "members": [self._world.member_json(u, with_user=True) for u in found],
            "not_found": not_found,
        }  # fmt: skip
        if data.get("presences"):
            chunk["presences"] = []
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        async with session.lock:
            await self._emit(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def echo(self, event: str, record: MessageRecord) -> None:
        """Discord sends the bot its own non-ephemeral messages over the gateway too."""
        if record.ephemeral:
            return
        guild = record.channel_id in self._state.channels
        try:
            session = self.target(guild)
        except RuntimeError:
            return
        if not self._subscribed(session, guild):
            return
        if event == "MESSAGE_DELETE":
            data: JSON = {"id": str(record.id), "channel_id": str(record.channel_id)}
            if guild:
                data["guild_id"] = str(GUILD_ID)
        else:
            data = dict(self._state.payloads[record.id])
            if guild:
                data["guild_id"] = str(GUILD_ID)
                data["member"] = self._world.member_json(BOT_ID, with_user=False)
        async with session.lock:
            await self._emit(session, event, data)
