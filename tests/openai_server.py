"""A real OpenAI-compatible server for tests: llama_cpp.server (llama-cpp-python[server]) on
the bundled model, on a free port of 127.0.0.1, with an API key."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from botkit.backends.model_files import bundled_model_path

API_KEY = "test-key-0123456789"
ALIAS = "smollm2"
SERVER_CTX = 2048
_STARTUP_SECONDS = 120  # loading the model and importing FastAPI on a busy 2-core machine


@dataclass(frozen=True)
class RealServer:
    """Where the server listens; `base_url` ends in /v1."""

    base_url: str
    api_key: str = API_KEY
    model: str = ALIAS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_cpp_server(
    n_ctx: int = SERVER_CTX,
    model: Path | None = None,
    alias: str = ALIAS,
    embedding: bool = False,
    chat_format: str | None = None,
) -> Iterator[RealServer]:
    """Start the server on model (the bundled one by default) with an n_ctx-token context
    (embedding: serving /v1/embeddings; chat_format: the server's, e.g.
    "chatml-function-calling" for tool calls); ready once uvicorn says it is listening (read
    from its log)."""
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model or bundled_model_path()),
        "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--api_key", API_KEY, "--verbose", "false",
        "--embedding", str(embedding).lower(),
        *(["--chat_format", chat_format] if chat_format else []),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=_STARTUP_SECONDS)
            if line is None:
                raise RuntimeError("llama_cpp.server exited:\n" + "".join(seen[-20:]))
            seen.append(line)
            if "Uvicorn running on" in line:
                break
        yield RealServer(f"http://127.0.0.1:{port}/v1", model=alias)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=30)  # the pipe ends with the process
        assert process.stderr is not None
        process.stderr.close()
