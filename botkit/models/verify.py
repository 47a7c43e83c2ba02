"""Checking a model file before anything loads it: size, sha256 and GGUF header.

huggingface_hub checks the size only. The sha256 is compared with what the Hub lists for the
file (its LFS object id) or, with no listing at hand (a start without the network), with the
blob's own name: huggingface_hub names an LFS blob by that same sha256. Hashing a file of
several GB takes a while, so it reports progress (systemd's start timeout is extended as it
goes) and stops when the pull is asked to.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from botkit.backends.gguf_file import GgufError, read_gguf_header
from botkit.models.progress import PullProgress

__all__ = ["file_problems"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 1 << 20


def _sha256(path: Path, label: str, progress: PullProgress) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as file:
        while block := file.read(_BLOCK):
            progress.check()
            digest.update(block)
            done += len(block)
            progress.checking(label, done, total)
    return digest.hexdigest()


def file_problems(
    path: Path,
    label: str,
    progress: PullProgress,
    *,
    size: int | None = None,
    sha256: str | None = None,
) -> str | None:
    """What is wrong with the model file at path (None when nothing): its size and sha256 against
    the Hub's listing (without one, the sha256 its blob is named by), then its GGUF header."""
    blob = path.resolve()
    actual = blob.stat().st_size
    if size is not None and actual != size:
        return f"it has {actual} bytes, the Hub lists {size}"
    expected = sha256 or (blob.name if _SHA256.match(blob.name) else None)
    if expected is not None:
        if actual > 500_000_000:
            progress.message(f"checking the sha256 of {label} …")
        digest = _sha256(blob, label, progress)
        if digest != expected:
            where = "the Hub lists" if sha256 else "its name in the cache says"
            return f"its sha256 is {digest}, {where} {expected}"
    try:
        read_gguf_header(blob)
    except GgufError as exc:
        return str(exc)
    return None
