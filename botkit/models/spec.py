"""What names a model on the Hub: `OWNER/REPO[:QUANT]` or `hf://OWNER/REPO/FILE.gguf`.

Parsed once, with a message that shows both forms, for the CLI and the config alike. Imports
nothing heavy: the config validates these at load time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FORMS", "ModelError", "ModelSpec", "parse_model_spec"]

FORMS = (
    "OWNER/REPO, OWNER/REPO:QUANT (e.g. bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M) "
    "or hf://OWNER/REPO/FILE.gguf"
)

# The Hub's repo id rule (huggingface_hub utils/_validators.py validate_repo_id): letters,
# digits, "-", "_", "." up to 96 per part, no "--" or "..", not starting or ending with - or .
_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?"
_REPO = re.compile(rf"^{_PART}/{_PART}$")
_QUANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_FILE = re.compile(r"^[\w.+-]+(?:/[\w.+-]+)*\.gguf$", re.IGNORECASE)


class ModelError(Exception):
    """A model could not be found, chosen, pulled or removed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model on the Hub: a repo, and either a quantization to pick or an exact file."""

    repo: str
    quant: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        if self.filename is not None:
            return f"hf://{self.repo}/{self.filename}"
        return f"{self.repo}:{self.quant}" if self.quant else self.repo


def _check_repo(repo: str, text: str) -> str:
    if not _REPO.match(repo) or "--" in repo or ".." in repo:
        raise ValueError(f"{text!r} does not name a Hub repository; use {FORMS}")
    return repo


def parse_model_spec(text: str) -> ModelSpec:
    """The spec in text; ValueError says what is wrong and which forms are allowed."""
    text = text.strip()
    if len(text) > 400:
        raise ValueError(f"a model name is at most 400 characters; use {FORMS}")
    if text.startswith("hf://"):
        owner, _, rest = text[len("hf://") :].partition("/")
        name, _, filename = rest.partition("/")
        repo = _check_repo(f"{owner}/{name}", text)
        if not _FILE.match(filename) or ".." in filename.split("/"):
            raise ValueError(
                f"{text!r}: hf:// needs the path of a .gguf file in the repository "
                f"(hf://OWNER/REPO/FILE.gguf)"
            )
        return ModelSpec(repo, filename=filename)
    repo, colon, quant = text.partition(":")
    _check_repo(repo, text)
    if colon and not _QUANT.match(quant):
        raise ValueError(
            f"{text!r}: the quantization after ':' is a name such as Q4_K_M, Q8_0 or F16 "
            "(letters, digits, '_', '.', '-'; at most 32)"
        )
    return ModelSpec(repo, quant=quant or None)
