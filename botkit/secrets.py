"""Secrets (bot tokens): from the environment or systemd credentials, never the config file.

Every secret read here is registered with the log redactor, so it cannot reach the logs even
when a library logs a URL that contains it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

__all__ = ["RedactingFilter", "install_redaction", "read_secret", "redact"]

_SECRETS: set[str] = set()
_MASK = "[REDACTED]"


# Secrets that are not configured but come and go: Discord interaction tokens, which discord.py
# logs at DEBUG inside URLs (/webhooks/<application id>/<token>/…,
# /interactions/<id>/<token>/callback) and in INTERACTION_CREATE payloads ("token": "...").
# Each is enough to answer as the bot for 15 minutes.
_PATTERNS = (
    re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.\-]+"),
    re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+"""),
)


def redact(text: str) -> str:
    """text with every known secret (and every interaction token) replaced by [REDACTED]."""
    for secret in _SECRETS:
        text = text.replace(secret, _MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{_MASK}", text)
    return text


class RedactingFilter(logging.Filter):
    """Replaces every known secret in a log record's message with [REDACTED]."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message or record.exc_info:
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            record.msg, record.args = redacted, None
        return True


def install_redaction() -> None:
    """Put the redacting filter on every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def read_secret(env_name: str, credential: str) -> str | None:
    """The secret from $env_name, else from $CREDENTIALS_DIRECTORY/credential, else None."""
    value = os.environ.get(env_name, "").strip()
    if not value:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        path = Path(directory) / credential if directory else None
        if path is not None and path.is_file():
            value = path.read_text(encoding="utf-8").strip()
    if not value:
        return None
    _SECRETS.add(value)
    return value
