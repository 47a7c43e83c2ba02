"""`botkit models pull --ollama NAME`: the daemon pulls, botkit shows the `ollama` client's
progress stream (a bar per layer on a terminal, lines and STATUS= elsewhere)."""

from __future__ import annotations

from typing import Any

import httpx
from ollama import AsyncClient, ResponseError
from tqdm import tqdm

from botkit.models.files import human_size
from botkit.models.progress import PullProgress
from botkit.models.spec import ModelError

__all__ = ["pull_ollama"]


async def pull_ollama(name: str, host: str, progress: PullProgress) -> None:
    """Pull name through the Ollama daemon at host; ModelError says what failed."""
    client = AsyncClient(host=host)
    bars: dict[str, Any] = {}
    reported: dict[str, int] = {}
    last_status = ""
    try:
        async for part in await client.pull(name, stream=True):
            status = part.status or ""
            if part.digest and part.total:
                done = part.completed or 0
                if progress.tty:
                    bar = bars.get(part.digest)
                    if bar is None:
                        bar = bars[part.digest] = tqdm(
                            total=part.total, unit="B", unit_scale=True, desc=status
                        )
                    bar.update(done - bar.n)
                else:
                    percent = done * 100 // part.total
                    if reported.get(part.digest, -1) // 10 != percent // 10:
                        reported[part.digest] = percent
                        progress.message(
                            f"{status}: {percent}% ({human_size(done)} of {human_size(part.total)})"
                        )
            elif status != last_status:
                progress.message(status)
            last_status = status
    except ResponseError as exc:
        raise ModelError(f"Ollama at {host} could not pull {name!r}: {exc.error}") from None
    except (ConnectionError, httpx.TransportError) as exc:
        raise ModelError(
            f"Ollama at {host} is not reachable ({type(exc).__name__}): is the daemon running?"
        ) from None
    finally:
        for bar in bars.values():
            bar.close()
        await client.close()  # type: ignore[no-untyped-call]
    if last_status != "success":
        raise ModelError(f"Ollama at {host} stopped pulling {name!r} before it finished")
