"""botkit models: the real huggingface_hub client against the Hub emulator (HF_ENDPOINT), the
real ollama client against the Ollama emulator, and a config model loaded by llama.cpp."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import signal
import socket
import struct
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import PIPE
from typing import Any, BinaryIO

import pytest
from huggingface_hub import file_download

from botkit.backends.gguf_file import read_gguf_header
from botkit.backends.model_files import bundled_model_path
from botkit.cli import main
from botkit.compose import build_bot
from botkit.models.hub import HubSettings, find_local, pull, repo_dir
from botkit.models.progress import PullProgress
from botkit.models.spec import parse_model_spec
from botkit.systemd import Notifier
from tests.conftest import MakeConfig, say
from tests.emulators.hf import GATED_REPO, SMOL_REPO, SPLIT_REPO, HubEmulator, HubFile
from tests.emulators.hf.gguf_files import gguf_bytes, smollm_metadata
from tests.emulators.ollama import EmulatedModel, OllamaEmulator
from tests.integration.test_console_tty import Terminal

Q4 = "SmolLM2-135M-Instruct-Q4_1.gguf"
Q3 = "SmolLM2-135M-Instruct-Q3_K_M.gguf"
Q2 = "SmolLM2-135M-Instruct-Q2_K.gguf"


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HubEmulator]:
    emulator = HubEmulator()
    await emulator.start()
    monkeypatch.setenv("HF_ENDPOINT", emulator.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_TOKEN", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    yield emulator
    await emulator.stop()


def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


async def botkit(*argv: str) -> int:
    """`botkit ARGV` in a thread, so the emulators keep serving on this loop."""
    return await asyncio.to_thread(main, list(argv))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cdn_gets(hub: HubEmulator) -> list[str | None]:
    return [r.range for r in hub.records if r.origin == "cdn" and r.method == "GET"]


async def start_botkit(*argv: str, code: str | None = None) -> asyncio.subprocess.Process:
    """`botkit ARGV` as a process of its own (it inherits HF_ENDPOINT and HF_HOME), piped; with
    code, that Python code runs instead of `-m botkit` and gets ARGV."""
    command = ["-c", code] if code else ["-m", "botkit"]
    return await asyncio.create_subprocess_exec(
        sys.executable, *command, *argv, stdin=PIPE, stdout=PIPE, stderr=PIPE
    )


async def read_until(stream: asyncio.StreamReader | None, text: str) -> str:
    """Lines from stream up to the one holding text (AssertionError if it ends first)."""
    assert stream is not None
    seen = ""
    while text not in seen:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"the output ended before {text!r}:\n{seen}")
        seen += line.decode()
    return seen


async def stopped(child: asyncio.subprocess.Process) -> None:
    """Kill the child if it still runs (a failed test), and reap it."""
    if child.returncode is None:
        child.kill()
    await child.wait()


async def test_pull_downloads_verifies_and_never_downloads_again(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q4_1") == 0
    out, err = capsys.readouterr()
    path = find_local(parse_model_spec(f"{SMOL_REPO}:q4_1"), cache(tmp_path))
    assert path is not None
    assert path.name == Q4
    assert sha256(path) == sha256(bundled_model_path())
    assert str(path) in out
    assert f'model = "{SMOL_REPO}:Q4_1"' in out
    # Not a terminal: percentage lines, ending at 100 %.
    assert f"{Q4}: 100% (98.4 MB of 98.4 MB)" in err
    assert f"{Q4}: 50%" in err or f"{Q4}: 53%" in err
    # The token never leaves the Hub; the CDN got one GET of the whole file.
    assert cdn_gets(hub) == [None]
    assert not any(r.authorized for r in hub.records)

    assert await botkit("models", "pull", f"{SMOL_REPO}:Q4_1") == 0
    assert f"{Q4}: already here" in capsys.readouterr().err
    assert cdn_gets(hub) == [None]


async def test_a_repo_with_several_models_lists_them_and_asks(
    hub: HubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await botkit("models", "pull", SMOL_REPO) == 1
    err = capsys.readouterr().err
    assert f"{SMOL_REPO} has 3 GGUF models; name one with {SMOL_REPO}:QUANT" in err
    assert f"Q2_K       40.0 MB  {Q2}" in err
    assert f"Q3_K_M     60.0 MB  {Q3}" in err
    assert f"Q4_1       98.4 MB  {Q4}" in err
    assert "mmproj" not in err  # a vision projector is not a chat model
    assert cdn_gets(hub) == []

    assert await botkit("models", "pull", f"{SMOL_REPO}:Q5_K_M") == 1
    err = capsys.readouterr().err
    assert f"{SMOL_REPO} has no Q5_K_M model; its quantizations: Q2_K, Q3_K_M, Q4_1" in err


async def test_on_a_terminal_pull_asks_which_model_and_draws_a_bar(
    hub: HubEmulator, tmp_path: Path
) -> None:
    def session() -> tuple[str, str, int]:
        # The child inherits HF_ENDPOINT and HF_HOME from this process's environment.
        term = Terminal([sys.executable, "-m", "botkit", "models", "pull", SMOL_REPO], tmp_path)
        # A terminal has a size (a new pseudo-terminal has 0 columns, and tqdm draws nothing).
        fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        try:
            listing = term.expect("which one (1-3, Enter to stop)? ")
            term.type("2\n")
            screen = term.expect("use it: ")
            screen += term.expect("\n")
        finally:
            code = term.close()
        return listing, screen, code

    listing, screen, code = await asyncio.to_thread(session)
    assert f"{SMOL_REPO} has 3 GGUF models" in listing
    assert f"  2. Q3_K_M     60.0 MB  {Q3}" in listing
    assert code == 0
    assert "100%|" in screen  # huggingface_hub's tqdm bar, not percentage lines
    assert f"{Q3}: 100% (" not in screen
    assert f'model = "hf://{SMOL_REPO}/{Q3}"' in screen
    assert find_local(parse_model_spec(f"{SMOL_REPO}:Q3_K_M"), cache(tmp_path)) is not None


async def test_a_cut_download_resumes_where_it_stopped(hub: HubEmulator, tmp_path: Path) -> None:
    hub.cut_next(Q3, after=25_000_000)
    spec = parse_model_spec(f"{SMOL_REPO}:Q3_K_M")
    path = await asyncio.to_thread(pull, spec, HubSettings.from_env(), PullProgress(tty=False))
    ranges = cdn_gets(hub)
    assert ranges[0] is None
    assert len(ranges) == 2
    resumed_at = int(str(ranges[1]).removeprefix("bytes=").removesuffix("-"))
    # huggingface_hub keeps what it wrote (whole 10 MiB chunks) and asks for the rest.
    assert 0 < resumed_at <= 25_000_000
    assert sha256(path) == hub.repo(SMOL_REPO).file(Q3).sha256  # type: ignore[union-attr]


async def test_a_corrupt_download_is_refused_and_deleted(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.corrupt.add(Q2)
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 1
    err = capsys.readouterr().err
    listed = hub.repo(SMOL_REPO).file(Q2).sha256  # type: ignore[union-attr]
    assert f"{Q2} is corrupt: its sha256 is " in err
    assert f"the Hub lists {listed}. It has been deleted; run the pull again" in err
    folder = repo_dir(cache(tmp_path), SMOL_REPO)
    assert not any(p.is_file() for p in (folder / "blobs").iterdir())
    assert not list(folder.rglob("*.gguf"))
    assert list((folder / "blobs").glob("*.incomplete")) == []
    assert find_local(parse_model_spec(f"{SMOL_REPO}:Q2_K"), cache(tmp_path)) is None

    hub.corrupt.clear()
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 0


async def test_missing_and_gated_repos_say_what_to_do(
    hub: HubEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await botkit("models", "pull", "nobody/Nothing-GGUF:Q4_K_M") == 1
    assert (
        f"there is no model repository nobody/Nothing-GGUF on {hub.url} (check the name; a "
        "private one needs HF_TOKEN)" in capsys.readouterr().err
    )
    assert await botkit("models", "pull", f"hf://{SMOL_REPO}/nothing-Q4_0.gguf") == 1
    err = capsys.readouterr().err
    assert f"{SMOL_REPO} has no file nothing-Q4_0.gguf; its GGUF models:" in err
    assert Q4 in err

    assert await botkit("models", "pull", GATED_REPO) == 1
    assert (
        f"{GATED_REPO} is gated: accept its terms on its page on {hub.url} with your account, "
        "then set HF_TOKEN to a read token of that account" in capsys.readouterr().err
    )
    resolves = [r for r in hub.records if "/resolve/" in r.path]
    assert resolves
    assert not resolves[-1].authorized

    token = "hf_" + "x" * 34
    monkeypatch.setenv("HF_TOKEN", token)  # a token the Hub does not know
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q4_1") == 1
    out, err = capsys.readouterr()
    assert f"{hub.url} refused the token in HF_TOKEN (invalid or expired)" in err
    assert token not in out + err

    hub.tokens.add(token)
    monkeypatch.setenv("HF_TOKEN", token)
    assert await botkit("models", "pull", GATED_REPO) == 1
    out, err = capsys.readouterr()
    assert "the token in HF_TOKEN has no access to it" in err
    assert token not in out + err

    hub.grant(token, GATED_REPO)
    assert await botkit("models", "pull", GATED_REPO) == 0
    assert token not in "".join(capsys.readouterr())


SPLIT_FIRST = "SmolLM2-135M-Instruct-Q4_1-00001-of-00002.gguf"


async def test_a_split_model_is_pulled_whole_listed_once_loaded_and_answering(
    hub: HubEmulator,
    tmp_path: Path,
    make_config: MakeConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await botkit("models", "pull", f"{SPLIT_REPO}:Q4_1") == 0
    err = capsys.readouterr().err
    assert f"Q4_1/{SPLIT_FIRST} (part 1 of 2): 100%" in err
    assert "Q4_1/SmolLM2-135M-Instruct-Q4_1-00002-of-00002.gguf (part 2 of 2): 100%" in err
    path = find_local(parse_model_spec(SPLIT_REPO), cache(tmp_path))
    assert path is not None
    assert path.name == SPLIT_FIRST
    assert (path.parent / "SmolLM2-135M-Instruct-Q4_1-00002-of-00002.gguf").is_file()

    assert await botkit("models", "list") == 0
    out = capsys.readouterr().out
    assert out.count("-of-00002.gguf") == 1
    # Both parts' tensors add up to the whole model's parameters.
    assert f"file {SPLIT_FIRST} in 2 parts, 98.4 MB, 134.5M parameters, Q4_1" in out

    config = make_config(backends={"local": {"model": f"hf://{SPLIT_REPO}/Q4_1/{SPLIT_FIRST}"}})
    async with build_bot(config) as bot:  # llama.cpp opens part 1 and finds part 2 beside it
        reply = await say(bot, "Say hello.")
        assert reply.text
        assert not reply.text.startswith("⚠")
        assert "parameters: 134.5M" in (await say(bot, "/model")).text


async def test_models_list_figures_come_from_the_gguf_metadata(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for quant in ("Q4_1", "Q3_K_M", "Q2_K"):
        assert await botkit("models", "pull", f"{SMOL_REPO}:{quant}") == 0
    capsys.readouterr()
    # Read independently: the header's own keys, and llama.cpp's parameter count for the
    # bundled model (Llama.n_params(): 134,515,008).
    meta = read_gguf_header(bundled_model_path()).metadata
    heads = int(meta["llama.attention.head_count"])
    kv_per_token = (
        2 * int(meta["llama.block_count"]) * int(meta["llama.attention.head_count_kv"])
        * (int(meta["llama.embedding_length"]) // heads) * 2
    )  # fmt: skip
    assert kv_per_token == 23_040
    n_ctx = 2048
    kv = kv_per_token * n_ctx  # 47,185,920 bytes
    q4_size = bundled_model_path().stat().st_size  # 98,362,432 bytes

    # 110 MB free: Q4_1 (98.4 + 47.2) is too big, Q3_K_M (60.0 + 47.2) is the largest that fits.
    assert await botkit("models", "list", "--n-ctx", str(n_ctx), "--ram", "110M") == 0
    out = capsys.readouterr().out
    assert f"memory for a {n_ctx}-token window; 110.0 MB given with --ram" in out
    q4 = out.split(f"{SMOL_REPO}:Q4_1\n")[1].split("\n\n")[0]
    assert q4.splitlines() == [
        f"  file {Q4}, 98.4 MB, 134.5M parameters, Q4_1, trained context 8192",
        f"  memory: 98.4 MB weights + 47.2 MB KV = {(q4_size + kv) / 1e6:.1f} MB: too big for "
        f"110.0 MB; the largest quantization of it that fits: {SMOL_REPO}:Q3_K_M (107.2 MB)",
    ]
    assert f"{SMOL_REPO}:Q3_K_M\n  file {Q3}, 60.0 MB, parameters ?, Q3_K_M" in out
    assert "60.0 MB weights + 47.2 MB KV = 107.2 MB: fits" in out
    assert "40.0 MB weights + 47.2 MB KV = 87.2 MB: fits" in out

    assert await botkit("models", "list", "--ram", "50M") == 0
    out = capsys.readouterr().out
    assert (
        "87.2 MB: too big for 50.0 MB; no quantization of it here fits (botkit models pull "
        f"{SMOL_REPO} lists the others with their sizes)" in out
    )
    bundled = out.split("SmolLM2-135M-Instruct.Q4_1.gguf\n")[1]  # not from the Hub
    assert "145.5 MB: too big for 50.0 MB; pick a smaller quantization" in bundled

    with pytest.raises(SystemExit) as refused:  # argparse: usage and status 2
        await botkit("models", "list", "--n-ctx", "100")
    assert refused.value.code == 2
    assert "--n-ctx is a token count from 256 to 1048576" in capsys.readouterr().err


async def test_rm_deletes_a_model_and_then_the_repo(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for quant in ("Q4_1", "Q2_K"):
        assert await botkit("models", "pull", f"{SMOL_REPO}:{quant}") == 0
    folder = repo_dir(cache(tmp_path), SMOL_REPO)
    assert len(list((folder / "blobs").iterdir())) == 2

    assert await botkit("models", "rm", SMOL_REPO) == 1
    assert "(or --all to remove every one)" in capsys.readouterr().err
    assert await botkit("models", "rm", f"{SMOL_REPO}:Q2_K") == 0
    assert f"removed {Q2}" in capsys.readouterr().out
    assert len(list((folder / "blobs").iterdir())) == 1
    assert find_local(parse_model_spec(f"{SMOL_REPO}:Q4_1"), cache(tmp_path)) is not None

    assert await botkit("models", "rm", SMOL_REPO, "--all") == 0
    assert not folder.exists()
    assert await botkit("models", "rm", SMOL_REPO) == 1
    assert f"{SMOL_REPO} is not in" in capsys.readouterr().err


async def test_a_config_model_is_pulled_on_first_start_then_loaded_and_answering(
    hub: HubEmulator, make_config: MakeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(backends={"local": {"model": f"{SMOL_REPO}:Q4_1", "n_ctx": 2048}})
    async with build_bot(config) as bot:
        reply = await say(bot, "Say hello.")
        assert reply.text
        assert not reply.text.startswith("⚠")
        described = (await say(bot, "/model")).text
    assert "model: SmolLM2-135M-Instruct-Q4_1" in described
    assert "quantization: Q4_1" in described
    assert f"local (llamacpp: {SMOL_REPO}:Q4_1, Q4_1, 98.4 MB)  ← this chat" in described
    err = capsys.readouterr().err
    assert f"{SMOL_REPO}:Q4_1 is not in" in err
    assert f"{Q4}: 100%" in err
    requests = len(hub.records)

    async with build_bot(config) as bot:  # the second start asks nobody
        assert (await say(bot, "Again.")).text
    assert len(hub.records) == requests
    assert "pulling" not in capsys.readouterr().err


async def test_progress_reaches_systemd_as_status(hub: HubEmulator, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        progress = PullProgress(notifier=Notifier({"NOTIFY_SOCKET": str(path)}), tty=True)
        # Under systemd even a terminal gets line progress (no bar in the journal).
        assert progress.bar_class("x").__name__ == "LineProgress"
        # Read as they come, as systemd does (a datagram socket queues only 10 by default:
        # /proc/sys/net/unix/max_dgram_qlen), until the test's own "END".
        loop = asyncio.get_running_loop()
        messages: list[str] = []

        async def collect() -> None:
            while (message := (await loop.sock_recv(sock, 4096)).decode()) != "END":
                messages.append(message)

        collector = asyncio.create_task(collect())
        spec = parse_model_spec(f"{SMOL_REPO}:Q2_K")
        await asyncio.to_thread(pull, spec, HubSettings.from_env(), progress)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as end:
            await asyncio.to_thread(end.sendto, b"END", str(path))
        await collector
    statuses = [m.split("\n")[0] for m in messages]
    percents = [
        int(s.removeprefix(f"STATUS=downloading {Q2}: ").removesuffix("%"))
        for s in statuses
        if s.startswith("STATUS=downloading")
    ]
    # huggingface_hub hands over 10 MiB at a time: 0, 26, 52, 78 and 100 % of 40 MB.
    assert percents == sorted(percents)
    assert len(percents) >= 4
    assert percents[-1] == 100
    assert statuses[0] == f"STATUS=pulling {Q2}, 40.0 MB"
    assert all("EXTEND_TIMEOUT_USEC=60000000" in m for m in messages)
    # Hashing it extends the start timeout too (a big model takes a while).
    assert any(s.startswith(f"STATUS=checking the sha256 of {Q2}: ") for s in statuses)


async def test_ollama_pull_shows_the_daemons_progress(capsys: pytest.CaptureFixture[str]) -> None:
    ollama = OllamaEmulator(pullable=[EmulatedModel("llama3.2:1b")])
    await ollama.start()
    try:
        assert await botkit("models", "pull", "--ollama", "llama3.2:1b", "--host", ollama.url) == 0
        out, err = capsys.readouterr()
        assert "pulling manifest" in err
        layer = [line for line in err.splitlines() if line.startswith("pulling aaaaaaaaaaaa:")]
        # Not a terminal: a line per 10 % of each layer, from 0 to 100.
        assert layer[0] == "pulling aaaaaaaaaaaa: 0% (0.0 MB of 98.4 MB)"
        assert layer[-1] == "pulling aaaaaaaaaaaa: 100% (98.4 MB of 98.4 MB)"
        assert len(layer) == 11
        assert "verifying sha256 digest" in err
        assert f"llama3.2:1b is on the Ollama server at {ollama.url}" in out
        assert any(m.name == "llama3.2:1b" for m in ollama.models)

        assert await botkit("models", "pull", "--ollama", "llama9:70b", "--host", ollama.url) == 1
        assert (
            f"Ollama at {ollama.url} could not pull 'llama9:70b': pull model manifest: file "
            "does not exist" in capsys.readouterr().err
        )
    finally:
        await ollama.stop()


async def test_models_list_shows_a_malformed_file_as_unreadable(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = repo_dir(cache(tmp_path), "o/Bad-GGUF") / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    # 200,000 arrays inside each other (ggml allows none): a RecursionError traceback before.
    (snapshot / "Bad-Q4_0.gguf").write_bytes(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
        + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 200_000 + struct.pack("<IQ", 4, 0)
    )  # fmt: skip
    assert await botkit("models", "list") == 0
    out = capsys.readouterr().out
    assert "o/Bad-GGUF:Q4_0\n  unreadable: Bad-Q4_0.gguf: an array of arrays in the metadata" in out
    assert "SmolLM2-135M-Instruct.Q4_1.gguf\n  file " in out  # the others are still listed


# `botkit ARGV` whose sha256 check signals the test on stdout, then waits to be killed.
_STUCK_WHILE_CHECKING = """
import os, sys
import botkit.models.verify as verify

def stuck(*args, **kwargs):
    os.write(1, b"checking\\n")
    sys.stdin.read()

verify._sha256 = stuck
from botkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def _kill_while_checking(*argv: str) -> None:
    child = await start_botkit(*argv, code=_STUCK_WHILE_CHECKING)
    try:
        async with asyncio.timeout(120):
            assert child.stdout is not None
            assert await child.stdout.readline() == b"checking\n"
    finally:
        child.kill()
        await stopped(child)


async def test_a_pull_killed_while_checking_is_checked_again_not_trusted(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.corrupt.add(Q2)  # damaged on the way; the pull is killed before its check could tell
    await _kill_while_checking("models", "pull", f"{SMOL_REPO}:Q2_K")
    hub.corrupt.clear()
    blob = next(repo_dir(cache(tmp_path), SMOL_REPO).glob(f"snapshots/*/{Q2}")).resolve()
    damaged = sha256(blob)
    assert damaged != blob.name  # linked into the snapshot by huggingface_hub, never checked

    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 0
    err = capsys.readouterr().err
    listed = hub.repo(SMOL_REPO).file(Q2).sha256  # type: ignore[union-attr]
    assert "already here" not in err
    assert f"{Q2}: here but not checked yet; checking it" in err
    assert (
        f"{Q2}: its sha256 is {damaged}, the Hub lists {listed}; deleting it and pulling it again"
        in err
    )
    path = find_local(parse_model_spec(f"{SMOL_REPO}:Q2_K"), cache(tmp_path))
    assert path is not None
    assert sha256(path) == listed
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 0  # checked once is enough
    assert f"{Q2}: already here" in capsys.readouterr().err


async def test_a_start_never_loads_a_file_a_killed_pull_left_unchecked(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.corrupt.add(Q2)
    await _kill_while_checking("models", "pull", f"{SMOL_REPO}:Q2_K")
    spec = parse_model_spec(f"{SMOL_REPO}:Q2_K")
    # What a start does first: without the network, the blob's name is the sha256 to match.
    assert find_local(spec, cache(tmp_path), PullProgress(tty=False)) is None
    assert "its sha256 is " in capsys.readouterr().err
    folder = repo_dir(cache(tmp_path), SMOL_REPO)
    assert list((folder / "blobs").iterdir()) == []
    assert list(folder.glob(f"snapshots/*/{Q2}")) == []


async def test_partial_downloads_of_killed_pulls_are_listed_and_removed(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = repo_dir(cache(tmp_path), SMOL_REPO) / "blobs"

    async def killed_mid_download() -> None:
        hub.hold_next(Q2, after=15_000_000)
        child = await start_botkit("models", "pull", f"{SMOL_REPO}:Q2_K")
        try:
            async with asyncio.timeout(120):
                await read_until(child.stderr, f"{Q2}: ")  # a progress line: bytes are coming
        finally:
            child.kill()
            await stopped(child)
            hub.release()

    await killed_mid_download()
    assert len(list(blobs.glob("*.incomplete"))) == 1
    assert await botkit("models", "list") == 0
    out = capsys.readouterr().out
    assert f"{SMOL_REPO}: 1 partial download(s), " in out
    assert "left by a stopped pull (or one running now)" in out
    assert await botkit("models", "rm", f"{SMOL_REPO}:Q2_K") == 0
    assert "removed 1 partial download(s) left by a stopped pull" in capsys.readouterr().out
    assert not blobs.parent.exists()

    # They no longer pile up, one per attempt: each pull removes those before it.
    await killed_mid_download()
    await killed_mid_download()
    assert len(list(blobs.glob("*.incomplete"))) == 1
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 0
    err = capsys.readouterr().err
    assert f"removed 1 partial download(s) of {SMOL_REPO} left by a stopped pull" in err
    assert list(blobs.glob("*.incomplete")) == []


def _run_config(tmp_path: Path, model: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n'
        f'[backends.local]\nmodel = "{model}"\n',
        encoding="utf-8",
    )
    return config


async def test_sigterm_during_a_first_start_ends_the_download_and_leaves_no_partial_file(
    hub: HubEmulator, tmp_path: Path
) -> None:
    hub.hold_next(Q4, after=25_000_000)
    child = await start_botkit("run", "--config", str(_run_config(tmp_path, f"{SMOL_REPO}:Q4_1")))
    try:
        async with asyncio.timeout(120):
            await read_until(child.stderr, f"{Q4}: ")  # downloading
            child.send_signal(signal.SIGTERM)
            await read_until(child.stderr, f"stopping: {SMOL_REPO}:Q4_1 is not ready")
            hub.release()  # the next block arrives, and the pull ends there
            code = await child.wait()
            assert child.stderr is not None
            rest = (await child.stderr.read()).decode()
    finally:
        await stopped(child)
    assert code == 0, rest
    assert "botkit: stopped while starting (SIGTERM)" in rest
    assert list((repo_dir(cache(tmp_path), SMOL_REPO) / "blobs").iterdir()) == []


async def test_run_exits_1_when_the_hub_fails_and_2_when_the_model_is_wrong(
    hub: HubEmulator, tmp_path: Path
) -> None:
    """systemd restarts exit status 1; 2 is RestartPreventExitStatus (deploy/botkit.service)."""

    async def run(model: str) -> tuple[int, str]:
        child = await start_botkit("run", "--config", str(_run_config(tmp_path, model)))
        async with asyncio.timeout(120):
            _, err = await child.communicate()
        assert child.returncode is not None
        return child.returncode, err.decode()

    code, err = await run("nobody/Nothing-GGUF:Q4_K_M")
    assert code == 2, err
    assert "there is no model repository nobody/Nothing-GGUF" in err
    hub.outage = 503
    code, err = await run(f"{SMOL_REPO}:Q4_1")
    assert code == 1, err
    assert f"{hub.url} answered HTTP 503 for {SMOL_REPO} (trouble on its side): try again" in err
    hub.outage = None
    await hub.stop()  # nothing listens there now
    code, err = await run(f"{SMOL_REPO}:Q4_1")
    assert code == 1, err
    assert f"cannot reach {hub.url} (ConnectError); check the network" in err


async def test_check_looks_for_a_hub_model_without_downloading_it(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_run_config(tmp_path, f"{SMOL_REPO}:Q4_1"))
    assert await botkit("db", "upgrade", "--config", config) == 0
    assert await botkit("check", "--config", config) == 0
    out = capsys.readouterr().out
    assert (
        f"backend local: model {SMOL_REPO}:Q4_1 is not downloaded yet (not in {cache(tmp_path)}); "
        f"`botkit models pull {SMOL_REPO}:Q4_1` or the first start will fetch it"
    ) in out
    assert hub.records == []  # not even a listing


async def test_a_login_asked_for_without_a_token_says_to_set_one(
    hub: HubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.files_need_login = True
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 1
    err = capsys.readouterr().err
    assert (
        f"{hub.url} asks for a login to download {SMOL_REPO}: it is gated or private. Set "
        "HF_TOKEN to a read token of an account that has access"
    ) in err
    assert "refused the token" not in err


class _FullDisk:
    """A file with room for `room` bytes, then ENOSPC, as a write to a full disk fails."""

    def __init__(self, file: BinaryIO, room: int) -> None:
        self._file = file
        self._room = room

    def write(self, data: bytes) -> int:
        if self._file.tell() + len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


async def test_a_full_disk_says_how_much_is_needed_and_where(
    hub: HubEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_get = file_download.http_get

    def http_get(url: str, temp_file: BinaryIO, *args: Any, **kwargs: Any) -> None:
        real_get(url, _FullDisk(temp_file, 15_000_000), *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(file_download, "http_get", http_get)
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 1
    err = capsys.readouterr().err
    blobs = repo_dir(cache(tmp_path), SMOL_REPO) / "blobs"
    assert f"the disk is full: {Q2} needs 40.0 MB in {blobs}, which has " in err
    assert "free. Free some space" in err
    assert "cut short" not in err
    assert list(blobs.iterdir()) == []


async def test_a_model_pulled_at_two_commits_is_listed_once_and_removed_whole(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 0
    newer = gguf_bytes(smollm_metadata(10, **{"general.name": "v2"}), 30_000_000)
    hub.publish(SMOL_REPO, HubFile(Q2, newer))
    assert await botkit("models", "pull", f"{SMOL_REPO}:Q2_K") == 0
    folder = repo_dir(cache(tmp_path), SMOL_REPO)
    assert len(list(folder.glob(f"snapshots/*/{Q2}"))) == 2
    capsys.readouterr()

    assert await botkit("models", "list") == 0
    out = capsys.readouterr().out
    assert out.count(f"{SMOL_REPO}:Q2_K\n") == 1
    assert f"{SMOL_REPO}:Q2_K\n  file {Q2}, 30.0 MB" in out  # the copy main points at
    assert (
        "an older copy of it (from an earlier commit of the repo) also takes 40.0 MB; "
        f"botkit models rm {SMOL_REPO}:Q2_K removes both"
    ) in out
    assert await botkit("models", "rm", f"{SMOL_REPO}:Q2_K") == 0
    assert capsys.readouterr().out.count(f"removed {Q2}") == 2
    assert not folder.exists()
