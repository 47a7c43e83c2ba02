"""The files of a Telegram message as attachments: a document (with its name, type and size)
and a photo (its largest size).

Reading one asks getFile for its path, then downloads it from the Bot API's file URL
(`/file/bot<token>/<file_path>`). The cloud Bot API serves files up to 20 MB only: getFile
answers 400 "file is too big" for a larger one (https://core.telegram.org/bots/api#getfile).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from telegram import Bot, Message
from telegram.error import BadRequest, TelegramError

from botkit.adapters.downloads import download
from botkit.core.events import Attachment, AttachmentError

__all__ = ["attachments"]


def attachments(message: Message, bot: Bot) -> tuple[Attachment, ...]:
    """The document and the photo of message, if any, readable through bot."""
    found: list[Attachment] = []
    document = message.document
    if document is not None:
        name = document.file_name or f"document-{document.file_unique_id}"
        found.append(
            Attachment(name, document.file_size, document.mime_type,
                       _reader(bot, document.file_id, name))
        )  # fmt: skip
    if message.photo:
        largest = message.photo[-1]  # sizes come smallest first (Bot API, Message.photo)
        name = f"photo-{largest.file_unique_id}.jpg"
        found.append(
            Attachment(name, largest.file_size, "image/jpeg", _reader(bot, largest.file_id, name))
        )
    return tuple(found)


def _reader(bot: Bot, file_id: str, name: str) -> Callable[[], AsyncGenerator[bytes, None]]:
    async def chunks() -> AsyncGenerator[bytes, None]:
        try:
            file = await bot.get_file(file_id)
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                raise AttachmentError(
                    f"{name} is over the 20 MB Telegram lets bots download; send a smaller file"
                ) from None
            raise AttachmentError(
                f"Telegram would not give {name} ({exc.message}); send it again"
            ) from None
        except TelegramError as exc:
            raise AttachmentError(
                f"Telegram did not give {name} ({type(exc).__name__}); send it again later"
            ) from None
        if not file.file_path:
            raise AttachmentError(f"Telegram gave no download path for {name}; send it again")
        async for chunk in download(file.file_path, name):
            yield chunk

    return chunks
