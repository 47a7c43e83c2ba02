"""The pictures users sent, stored once each (content-addressed by sha256), read back through
a cache bounded in bytes, with the describing backend's description kept beside them.

Saving and clearing can meet: one chat's /reset deletes an image nobody else carries while
another chat's turn saves the same picture again (found by its sha256) to link it. Saving
locks the rows it found (FOR KEY SHARE on PostgreSQL) until its transaction links them, and
clearing skips locked rows (FOR UPDATE SKIP LOCKED) or, if it locked one first, saving finds
it gone and inserts it again. On SQLite, one writer at a time serialises both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from cachetools import LRUCache
from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from botkit.images.spec import Image, ImageMime
from botkit.store.models import IMAGES, MESSAGE_IMAGES, utc_now
from botkit.store.writer import Writer

__all__ = ["CACHE_BYTES", "Images", "collect_images", "link_images", "store_images"]

# The loaded images kept in memory: a chat's last few pictures are sent with every turn while
# they stay in the prompt ([vision] keep_turns), and reading them costs a query each turn.
CACHE_BYTES = 64 * 1024 * 1024
# Saving retries if a concurrent clear deleted a picture between its insert and its lock.
_SAVE_TRIES = 5
_IMAGE_COLUMNS = (
    IMAGES.c.id, IMAGES.c.sha256, IMAGES.c.mime, IMAGES.c.width, IMAGES.c.height, IMAGES.c.data
)  # fmt: skip


def _insert_new(conn: AsyncConnection, rows: list[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT (sha256) DO NOTHING, in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(IMAGES).values(rows).on_conflict_do_nothing(index_elements=["sha256"])


async def store_images(conn: AsyncConnection, images: Sequence[Image]) -> list[int]:
    """Save images in conn's transaction (each picture once: an existing one keeps its row)
    and lock their rows against a clear until it ends; their ids, in images' order."""
    if not images:
        return []
    now = utc_now()
    by_sha = {
        i.sha256: {
            "sha256": i.sha256, "mime": i.mime, "width": i.width, "height": i.height,
            "size": len(i.data), "data": i.data, "created_at": now,
        }
        for i in images
    }  # fmt: skip
    found: dict[str, int] = {}
    for _ in range(_SAVE_TRIES):
        missing = [row for sha, row in by_sha.items() if sha not in found]
        await conn.execute(_insert_new(conn, missing))
        rows = await conn.execute(
            select(IMAGES.c.sha256, IMAGES.c.id)
            .where(IMAGES.c.sha256.in_([row["sha256"] for row in missing]))
            .with_for_update(key_share=True)
        )
        found.update({sha: int(image_id) for sha, image_id in rows})
        if len(found) == len(by_sha):
            return [found[i.sha256] for i in images]
    raise RuntimeError(f"images kept vanishing while saved: {sorted(set(by_sha) - set(found))}")


async def link_images(conn: AsyncConnection, links: Iterable[tuple[int, Sequence[int]]]) -> None:
    """Link each message id to its image ids, in order (message_images)."""
    rows = [
        {"message_id": message_id, "position": position, "image_id": image_id}
        for message_id, image_ids in links
        for position, image_id in enumerate(image_ids)
    ]
    if rows:
        await conn.execute(insert(MESSAGE_IMAGES), rows)


async def collect_images(conn: AsyncConnection, candidates: Sequence[int]) -> list[int]:
    """Delete those of candidates that no message links any more (and no saving turn holds);
    the ids deleted."""
    if not candidates:
        return []
    unlinked = (
        select(IMAGES.c.id)
        .where(
            IMAGES.c.id.in_(candidates),
            ~exists().where(MESSAGE_IMAGES.c.image_id == IMAGES.c.id),
        )
        .with_for_update(skip_locked=True)
    )
    doomed = [int(i) for i in (await conn.execute(unlinked)).scalars()]
    if doomed:
        await conn.execute(delete(IMAGES).where(IMAGES.c.id.in_(doomed)))
    return doomed


class Images:
    """The stored pictures (repo.images)."""

    def __init__(self, writer: Writer, cache_bytes: int = CACHE_BYTES) -> None:
        self._writer = writer
        self._cache: LRUCache[int, Image] = LRUCache(
            maxsize=cache_bytes, getsizeof=lambda image: len(image.data)
        )

    async def save(self, image: Image) -> int:
        """Store image (once: the same picture saved again gives the existing row's id)."""
        async with self._writer.transaction() as conn:
            (image_id,) = await store_images(conn, [image])
        return image_id

    async def load(self, ids: Iterable[int]) -> dict[int, Image]:
        """The images of ids that exist (a cleared one is absent), by id."""
        wanted = set(ids)
        found = {i: self._cache[i] for i in wanted if i in self._cache}
        missing = wanted - found.keys()
        if missing:
            for row in await self._writer.read(
                select(*_IMAGE_COLUMNS).where(IMAGES.c.id.in_(missing))
            ):
                image_id, sha, mime, width, height, data = row
                image = Image(sha, cast(ImageMime, mime), width, height, bytes(data))
                found[int(image_id)] = image
                if len(data) <= self._cache.maxsize:
                    self._cache[int(image_id)] = image
        return found

    async def describe(self, image_id: int, text: str, backend: str) -> None:
        """Keep what backend said image_id shows (asked once per picture, not per turn)."""
        async with self._writer.transaction() as conn:
            await conn.execute(
                update(IMAGES)
                .where(IMAGES.c.id == image_id)
                .values(description=text, described_by=backend)
            )

    async def description(self, image_id: int) -> tuple[str, str] | None:
        """(the kept description, the backend that gave it), or None if there is none."""
        rows = await self._writer.read(
            select(IMAGES.c.description, IMAGES.c.described_by).where(
                and_(IMAGES.c.id == image_id, IMAGES.c.description.is_not(None))
            )
        )
        return (rows[0][0], rows[0][1] or "") if rows else None

    def forget(self, ids: Iterable[int]) -> None:
        """Drop deleted images from the cache (a /reset's pictures leave memory too)."""
        for image_id in ids:
            self._cache.pop(image_id, None)
