"""Parsers that misbehave, run by the document reader's child process in tests."""

from __future__ import annotations

import threading

from botkit.retrieval.parsers import Parsed


def hangs(name: str, data: bytes, max_pages: int, max_chars: int) -> Parsed:
    """Never returns (as a parser stuck in a loop)."""
    threading.Event().wait()
    raise AssertionError("unreachable")


def eats_memory(name: str, data: bytes, max_pages: int, max_chars: int) -> Parsed:
    """Allocates without end (as a decompression bomb)."""
    hoard = []
    while True:
        hoard.append(bytearray(64 * 1024 * 1024))


def raises(name: str, data: bytes, max_pages: int, max_chars: int) -> Parsed:
    """A bug in the parser."""
    raise KeyError("/Kids")


def echoes(name: str, data: bytes, max_pages: int, max_chars: int) -> Parsed:
    """Returns the bytes as text: the parent is fine after the others."""
    return Parsed(data.decode())
