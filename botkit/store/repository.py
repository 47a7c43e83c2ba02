"""The store's one handle: Repository builds the store's parts on one engine and names their
operations.

The parts, one job each: the single writer (writer.py), the chat and window caches (caches.py),
the one-process-per-chat guard (guard.py), chats (chats.py), messages (messages.py), the
pictures they carry (images.py), the turn's writes (turns.py), chat adoption (adoption.py),
and beside them the cut replies' queue (cut_marks.py), plugin data (plugin_data.py) and
retrieval's chunks and documents (chunks.py, documents.py). A lease (leases.py) takes a
Repository for its writer and caches, and runs crash recovery (recovery.py) in its own transactions.

A facade, because the parts share one writer, one set of caches and one guard, which it wires
once, while the core, the plugins' context, the adapters and the tests call some twenty of
their operations (repo.chat, repo.window, repo.begin_turn, …) through one object they are
handed. Each operation is the part's own method, named here, not wrapped.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.store.adoption import adopt_chats
from botkit.store.caches import Caches
from botkit.store.chats import Chats
from botkit.store.chunks import Chunks
from botkit.store.cut_marks import CutMarks
from botkit.store.documents import Documents
from botkit.store.guard import OwnerGuard
from botkit.store.images import Images
from botkit.store.messages import Messages
from botkit.store.plugin_data import PluginData
from botkit.store.records import ChatRecord, NewMessage, StoredMessage
from botkit.store.turns import Turns
from botkit.store.writer import Writer

__all__ = ["ChatRecord", "NewMessage", "Repository", "StoredMessage"]


class Repository:
    """All reads and writes of the store (SQLAlchemy Core: rows, not ORM objects).

    cached_chats bounds each cache (chats, kept windows, the guard's memory). owner is this
    process's lease id (botkit.store.turns), settable once the lease is taken.
    """

    def __init__(
        self, engine: AsyncEngine, cached_chats: int = 1024, owner: str | None = None
    ) -> None:
        self.engine = engine
        self._writer = writer = Writer(engine)
        self._caches = caches = Caches(cached_chats)
        self._guard = guard = OwnerGuard(caches, cached_chats)
        self._turns = turns = Turns(writer, caches, guard, owner)
        chats = Chats(writer, caches)
        # The pictures users sent: saved with their turn (begin_turn's images), loaded by id,
        # their descriptions kept; cleared with the chat's history.
        self.images = Images(writer)
        messages = Messages(writer, caches, guard, self.images)
        # The database, for the stores beside this one (leases, cut marks, plugin data).
        self.transaction = writer.transaction
        self.read = writer.read
        self.close = writer.close
        self.drop_caches = caches.clear
        # Chats.
        self.chat = chats.chat
        self.find_chat = chats.find
        self.chat_keys = chats.keys
        self.set_setting = chats.set_setting
        self.set_window_start = chats.set_window_start
        # Messages.
        self.window = messages.window
        self.count_before = messages.count_before
        self.recount = messages.recount
        self.add_messages = messages.add_messages
        self.clear_history = messages.clear_history
        self.last_turn = messages.last_turn
        self.last_reply = messages.last_reply
        self.last_stats = messages.last_stats
        self.alternatives = messages.alternatives
        # A turn's writes.
        self.begin_turn = turns.begin_turn
        self.checkpoint = turns.checkpoint
        self.finish_turn = turns.finish_turn
        self.discard_reply = turns.discard_reply
        self.tool_round = turns.tool_round
        self.finish_result = turns.finish_result
        # The stores beside this one, on the same writer.
        self.cut_marks = CutMarks(writer)
        self.plugin_data = PluginData(writer)
        # Retrieval's rows: chunks with their vectors and keyword index, and documents.
        self.chunks = Chunks(writer)
        self.documents = Documents(writer, self.chunks)

    @property
    def owner(self) -> str | None:
        """The lease id that the replies this process writes carry while generated."""
        return self._turns.owner

    @owner.setter
    def owner(self, owner: str | None) -> None:
        self._turns.owner = owner

    async def adopt_chats(self, platform: str, prefix: str) -> int:
        """Chats of platform stored before their keys named the bot (no "/" in the key) get
        prefix in front, for the first bot to start after the upgrade. Returns how many."""
        return await adopt_chats(self._writer, self._caches, platform, prefix)
