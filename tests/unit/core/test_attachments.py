"""Attachment.read: the declared size checked before any download, the real size while it
runs, and the whole download bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from botkit.core.commands import Command, CommandError, Plugin
from botkit.core.events import Attachment, AttachmentError


class Source:
    """A download that yields chunks and records how far it got."""

    def __init__(self, *chunks: bytes, stall: bool = False) -> None:
        self.chunks = chunks
        self.stall = stall
        self.started = False
        self.served = 0
        self.closed = False

    async def __call__(self) -> AsyncGenerator[bytes, None]:
        self.started = True
        try:
            for chunk in self.chunks:
                self.served += 1
                yield chunk
            if self.stall:
                await asyncio.Event().wait()  # a peer that never sends the rest
        finally:
            self.closed = True


async def test_a_file_within_the_limit_is_read_whole() -> None:
    source = Source(b"hello ", b"world")
    file = Attachment("a.txt", 11, "text/plain", source)
    assert await file.read(limit=11) == b"hello world"
    assert source.closed


async def test_a_file_declared_too_big_is_refused_without_downloading() -> None:
    source = Source(b"x" * 10)
    file = Attachment("big.pdf", 3 * 1024 * 1024, "application/pdf", source)
    with pytest.raises(AttachmentError) as caught:
        await file.read(limit=1024 * 1024)
    assert str(caught.value) == "big.pdf is 3.0 MB; files up to 1.0 MB are accepted"
    assert not source.started


async def test_a_file_bigger_than_declared_stops_at_the_limit() -> None:
    source = Source(b"x" * 6, b"y" * 6, b"z" * 6, b"w" * 6)
    file = Attachment("liar.txt", 5, None, source)
    with pytest.raises(AttachmentError, match=r"liar.txt is over 10 bytes \(more than the"):
        await file.read(limit=10)
    assert source.served == 2  # the third chunk was never asked for
    assert source.closed


async def test_a_file_of_undeclared_size_is_bounded_too() -> None:
    file = Attachment("photo.jpg", None, "image/jpeg", Source(b"x" * 8, b"x" * 8))
    with pytest.raises(AttachmentError, match=r"photo\.jpg is over 10 bytes"):
        await file.read(limit=10)
    assert await Attachment("p.jpg", None, None, Source(b"ok")).read(limit=10) == b"ok"


async def test_a_stalled_download_ends_at_the_timeout() -> None:
    source = Source(b"part", stall=True)
    file = Attachment("slow.txt", 100, "text/plain", source)
    with pytest.raises(AttachmentError) as caught:
        await file.read(limit=1000, timeout=0.05)
    assert str(caught.value) == (
        "downloading slow.txt took over 0.05 s and was stopped; send it again later"
    )
    assert source.closed


async def test_the_adapters_error_reaches_the_caller() -> None:
    async def gone() -> AsyncGenerator[bytes, None]:
        raise AttachmentError("the link to a.txt has expired; send the file again")
        yield b""  # an async generator

    with pytest.raises(AttachmentError, match="has expired"):
        await Attachment("a.txt", 1, None, gone).read(limit=10)


async def _noop(ctx: object) -> None:
    return None


def test_a_file_sent_to_a_command_that_takes_none_is_refused() -> None:
    plain = Command("temp", "", _noop)
    plain.check_attachments(0)
    with pytest.raises(CommandError, match="/temp takes no file; send the command without one"):
        plain.check_attachments(1)
    Command("docs", "", _noop, takes_file=True).check_attachments(2)
    assert issubclass(AttachmentError, CommandError)  # unless caught, it is the reply


def test_a_command_that_takes_a_file_cannot_name_a_parameter_file() -> None:
    plugin = Plugin("docs")

    async def add(ctx: object, file: str = "") -> None:
        return None

    with pytest.raises(ValueError, match="parameter 'file' would clash with the file option"):
        plugin.command("add", takes_file=True)(add)
    plugin.command("add")(add)  # without a file it is an ordinary argument
