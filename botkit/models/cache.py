"""The Hub cache as botkit keeps it beside huggingface_hub: which files passed botkit's checks,
partial downloads left by stopped pulls, and deleting only what lies inside a repo's folder.

huggingface_hub's layout (its guide "Manage the huggingface_hub cache-system"):
models--OWNER--NAME/ holds blobs/ (each file once, named by its sha256 for LFS files),
snapshots/COMMIT/PATH (symlinks into blobs/) and refs/. A download is written to
blobs/ETAG.RANDOM.incomplete while it holds the lock .locks/models--OWNER--NAME/ETAG.lock, and
renamed into place when complete (file_download.py, _download_to_tmp_and_move): a killed
process leaves its .incomplete behind, and no later download reuses it (the name is random).

The blob is linked into the snapshot before botkit has checked it, so botkit marks the files
that passed in models--OWNER--NAME/botkit-verified/ (a folder huggingface_hub's cache scanner
does not read): one file per blob with its size, inode and mtime, so a blob rewritten or
replaced since is checked again rather than trusted.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = [
    "blob_inside",
    "delete_file",
    "forget",
    "is_verified",
    "mark_verified",
    "partial_downloads",
    "remove_stale_partials",
    "repo_dir",
    "snapshots",
]

_MARKS = "botkit-verified"
_LOCK_MODE = 0o664  # as huggingface_hub creates its locks (utils/_fixes.py WeakFileLock)


def repo_dir(cache_dir: Path, repo: str) -> Path:
    """The repo's folder in the cache (huggingface_hub's layout: models--OWNER--NAME)."""
    return cache_dir / ("models--" + repo.replace("/", "--"))


def snapshots(folder: Path) -> list[Path]:
    """The repo's snapshots, the one refs/main points at first, then the newest first."""
    ref = folder / "refs" / "main"
    main = folder / "snapshots" / ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
    others = sorted(
        (p for p in (folder / "snapshots").glob("*") if p != main),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return [main, *others] if main is not None and main.is_dir() else others


def _inside(path: Path, folder: Path) -> bool:
    return path.is_relative_to(folder.resolve())


def blob_inside(entry: Path, folder: Path) -> Path | None:
    """The file a snapshot entry stands for, if it lies in this repo's folder: its blob, or
    the entry itself in a cache without symlinks. None for a link that leads anywhere else."""
    target = entry.resolve()
    if _inside(target, folder / "blobs"):
        return target
    if not entry.is_symlink() and _inside(target, folder / "snapshots"):
        return target
    return None


def delete_file(entry: Path, folder: Path, *, with_blob: bool = True) -> None:
    """Delete a snapshot entry and (with_blob) the file under it, touching nothing outside
    folder: a link out of the cache is removed, what it points at is not."""
    blob = blob_inside(entry, folder)
    if _inside(entry.parent.resolve(), folder / "snapshots"):
        entry.unlink(missing_ok=True)
    if blob is not None and with_blob:
        blob.unlink(missing_ok=True)
        forget(folder, blob)


def _mark(folder: Path, blob: Path) -> Path:
    return folder / _MARKS / blob.name


def _stamp(blob: Path) -> str:
    stat = blob.stat()
    return f"{stat.st_size} {stat.st_ino} {stat.st_mtime_ns}"


def is_verified(folder: Path, blob: Path) -> bool:
    """Whether this blob, as it is now, passed botkit's checks."""
    mark = _mark(folder, blob)
    try:
        return mark.read_text(encoding="utf-8") == _stamp(blob)
    except OSError:
        return False


def mark_verified(folder: Path, blob: Path) -> None:
    """Record that the blob passed (written whole or not at all: a kill leaves no mark)."""
    mark = _mark(folder, blob)
    mark.parent.mkdir(exist_ok=True)
    partial = mark.with_name(mark.name + ".tmp")
    partial.write_text(_stamp(blob), encoding="utf-8")
    os.replace(partial, mark)


def forget(folder: Path, blob: Path) -> None:
    """Drop a deleted blob's mark."""
    _mark(folder, blob).unlink(missing_ok=True)


def partial_downloads(folder: Path) -> list[Path]:
    """The repo's partial downloads (running or left behind)."""
    return sorted((folder / "blobs").glob("*.incomplete"))


def remove_stale_partials(cache_dir: Path, folder: Path) -> list[tuple[Path, int]]:
    """Delete the partial downloads that no running download is writing (huggingface_hub holds
    the blob's lock while it writes); returns each one deleted with its size."""
    removed = []
    for partial in partial_downloads(folder):
        etag = partial.name.split(".", 1)[0]
        lock = FileLock(cache_dir / ".locks" / folder.name / f"{etag}.lock", mode=_LOCK_MODE)
        try:
            with lock.acquire(timeout=0):
                size = partial.stat().st_size
                partial.unlink()
        except Timeout:
            continue  # another process is downloading this file now
        except FileNotFoundError:
            continue  # it finished (renamed) or failed (deleted) meanwhile
        removed.append((partial, size))
    return removed
