"""DocumentRefused: an uploaded file botkit will not read, with a message fit for the chat."""

from __future__ import annotations

__all__ = ["ACCEPTED", "DocumentRefused"]

# Said in every refusal that is about the format, so the user knows what to send instead.
ACCEPTED = "botkit reads .txt, .md, .pdf and .html files"


class DocumentRefused(Exception):
    """The file cannot be read as a document; str(self) says what is wrong and what is
    allowed, fit to show the user. Nothing of the file has been stored."""
