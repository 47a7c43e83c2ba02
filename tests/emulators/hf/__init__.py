"""A local emulator of the Hugging Face Hub and its LFS CDN (see server.py)."""

from tests.emulators.hf.server import (
    GATED_REPO,
    SMOL_REPO,
    SPLIT_REPO,
    HubEmulator,
    HubFile,
    HubRecord,
    HubRepo,
)

__all__ = [
    "GATED_REPO",
    "SMOL_REPO",
    "SPLIT_REPO",
    "HubEmulator",
    "HubFile",
    "HubRecord",
    "HubRepo",
]
