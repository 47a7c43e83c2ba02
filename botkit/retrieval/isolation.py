"""Runs a parser of untrusted bytes in a child process, bounded in time and memory.

A malicious or broken file can make a parser loop, recurse or allocate without end. The child
gets an address-space limit (RLIMIT_AS) and a CPU-time limit, the parent a wall-clock timeout
after which it kills the child; whatever happens, only the child dies and the bot's event loop
never waits on the parse. One process per file, not a pool: a pool worker that must be killed
breaks the pool (and the other files in it), and ~0.3 s of start-up is nothing beside
embedding the chunks.

Protocol: the parent writes one JSON header line then the file's bytes to the child's stdin;
the child writes one JSON object to stdout: the parsed text, or `refused` (a message for the
user), or `error` (the parser raised).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from botkit.retrieval.parsers import Parsed
from botkit.retrieval.refusal import DocumentRefused

__all__ = ["Bounds", "parse_isolated"]

log = logging.getLogger(__name__)

Parser = Callable[[str, bytes, int, int], Parsed]


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one parse may use."""

    timeout: float  # wall clock, seconds, start-up included
    memory_bytes: int  # the child's address space
    max_pages: int
    max_chars: int


async def parse_isolated(parser: str, name: str, data: bytes, bounds: Bounds) -> Parsed:
    """Run `parser` ("module:function", a `Parser`) on data in a child process; its result,
    or DocumentRefused saying what went wrong (refused, too slow, too big, crashed)."""
    header = {
        "parser": parser,
        "name": name,
        "max_pages": bounds.max_pages,
        "max_chars": bounds.max_chars,
        "memory": bounds.memory_bytes,
        "cpu": math.ceil(bounds.timeout) + 1,
    }
    # The child imports the same botkit as this process (a source checkout or the wheel).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(bounds.timeout):
            out, err = await proc.communicate(json.dumps(header).encode() + b"\n" + data)
    except TimeoutError:
        raise DocumentRefused(
            f"{name} took longer than {bounds.timeout:g} s to read, so reading it was stopped: "
            "it may be malformed or unusually complex. Try a simpler export of it (for "
            "example, the text only)."
        ) from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: the child must not outlive us
            proc.kill()
            await asyncio.shield(proc.wait())
    return _result(name, proc.returncode, out, err, bounds)


def _result(name: str, status: int | None, out: bytes, err: bytes, bounds: Bounds) -> Parsed:
    try:
        reply = json.loads(out)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and "text" in reply:
        return Parsed(reply["text"], reply["pages"], tuple(reply["page_starts"]))
    if isinstance(reply, dict) and "refused" in reply:
        raise DocumentRefused(reply["refused"])
    tail = err.decode("utf-8", "replace")[-2000:]
    if isinstance(reply, dict) and "error" in reply:
        log.warning("the document reader failed on %s: %s", name, tail)
        raise DocumentRefused(f"{name} could not be read: the reader failed ({reply['error']}).")
    how = f"exit status {status}"
    if status is not None and status < 0:
        with contextlib.suppress(ValueError):
            how = f"signal {signal.Signals(-status).name}"
    log.warning("the document reader died on %s (%s): %s", name, how, tail)
    raise DocumentRefused(
        f"{name} could not be read: the reader stopped ({how}). The file may be malformed or "
        f"need more than {bounds.memory_bytes >> 20} MiB to read."
    )


def _child() -> None:
    """The child's side: limits first, then parse, then one JSON line."""
    header = json.loads(sys.stdin.buffer.readline())
    resource.setrlimit(resource.RLIMIT_AS, (header["memory"], header["memory"]))
    resource.setrlimit(resource.RLIMIT_CPU, (header["cpu"], header["cpu"]))
    data = sys.stdin.buffer.read()
    name = header["name"]
    reply: dict[str, object]
    try:
        module, _, function = header["parser"].partition(":")
        parse: Parser = getattr(importlib.import_module(module), function)
        parsed = parse(name, data, header["max_pages"], header["max_chars"])
        reply = {"text": parsed.text, "pages": parsed.pages, "page_starts": parsed.page_starts}
    except DocumentRefused as exc:
        reply = {"refused": str(exc)}
    except MemoryError:
        reply = {
            "refused": f"{name} needs more than {header['memory'] >> 20} MiB of memory to "
            "read, so reading it was stopped: it may be a decompression bomb or malformed."
        }
    except Exception as exc:
        traceback.print_exc()
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(reply))


if __name__ == "__main__":
    _child()
