"""The embedders against real models and servers: the converted all-MiniLM-L6-v2 in-process
(checked against a numpy forward pass of the same weights), the Ollama and OpenAI emulators
(with every way they misbehave) and a real llama_cpp.server."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from botkit.backends.base import Role
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.config.embedders import (
    LlamaCppEmbedderConfig,
    OllamaEmbedderConfig,
    OpenAIEmbedderConfig,
)
from botkit.retrieval import minilm_gguf
from botkit.retrieval.embed_llama import LlamaCppEmbedder
from botkit.retrieval.embedder import Embedder, EmbedderError
from botkit.retrieval.embedders import make_embedder
from botkit.store.models import MessageStatus
from botkit.store.records import NewMessage
from tests.conftest import MakeConfig, incoming, say
from tests.emulators.embeddings import EmbedFault
from tests.emulators.ollama.server import EmulatedModel, OllamaEmulator
from tests.emulators.openai.server import OpenAIEmulator
from tests.minilm_reference import embed_reference, wordpiece
from tests.openai_server import API_KEY, llama_cpp_server

SENTENCES = [
    "The cat sits on the mat.",
    "A kitten is resting on a rug.",
    "My dog's name is Biscuit.",
    "What is the name of my dog?",
    "Quarterly revenue grew by 12 percent, driven by strong demand in Europe.",
    "Unbelievably, tokenizers split antidisestablishmentarianism into wordpieces!",
]
OLLAMA_MODEL = "all-minilm:l6-v2"
KEY_ENV = "BOTKIT_TEST_EMBED_KEY"


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """botkit's cache (the converted model) in a temporary folder, converted once per module."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
async def local() -> AsyncIterator[LlamaCppEmbedder]:
    """The default in-process embedder, started."""
    embedder = LlamaCppEmbedder(LlamaCppEmbedderConfig())
    await embedder.start()
    yield embedder
    await embedder.close()


def _cosines(a: Any, b: Any) -> list[float]:
    return [
        float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b, strict=True)
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the converted model ----------------------------------------------------------------------


async def test_the_converted_model_matches_a_numpy_forward_pass(local: LlamaCppEmbedder) -> None:
    source = minilm_gguf.read_source(minilm_gguf.source_zip()[0])
    vectors = await local.embed(SENTENCES)
    for text, vector in zip(SENTENCES, vectors, strict=True):
        ids = wordpiece(source, text)
        assert local.count_tokens(text) == len(ids)  # the GGUF's tokenizer is BERT's
        cosine = float(embed_reference(source, ids) @ vector)
        assert cosine >= 0.99, (text, cosine)
    assert vectors.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert local.max_tokens == 512
    # The model does its job: the related pairs are closer than the unrelated ones.
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 4] + 0.3
    assert sims[2, 3] > sims[2, 4] + 0.3


async def test_one_batch_gives_the_vectors_of_one_text_at_a_time(local: LlamaCppEmbedder) -> None:
    together = await local.embed(SENTENCES)
    alone = np.concatenate([await local.embed([t]) for t in SENTENCES])
    assert min(_cosines(together, alone)) > 0.9999
    assert (await local.embed([])).shape == (0, 384)


def test_the_conversion_is_cached_by_version_and_redone_when_truncated(tmp_path: Path) -> None:
    path = minilm_gguf.default_gguf(tmp_path)
    assert path.name == f"all-MiniLM-L6-v2-{minilm_gguf.source_zip()[1]}-f16.gguf"
    size, stamp = path.stat().st_size, path.stat().st_mtime_ns
    assert minilm_gguf.default_gguf(tmp_path).stat().st_mtime_ns == stamp  # reused
    with path.open("r+b") as file:
        file.truncate(size // 2)  # a copy cut off (a full disk, a bad backup)
    assert "a truncated file" in (minilm_gguf.cached_problem(path) or "")
    assert minilm_gguf.default_gguf(tmp_path).stat().st_size == size  # converted again
    assert minilm_gguf.cached_problem(path) is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left


def test_a_conversion_that_fails_midway_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gguf

    def die(self: gguf.GGUFWriter, *args: Any, **kwargs: Any) -> None:
        assert self.fout is not None
        self.fout[0].write(b"\0" * 4096)  # some tensor data is written, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", die)
    with pytest.raises(KeyboardInterrupt):
        minilm_gguf.default_gguf(tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_the_model_runs_off_the_event_loop(local: LlamaCppEmbedder) -> None:
    embedding = asyncio.ensure_future(local.embed(SENTENCES * 40))
    other = asyncio.Event()
    # Scheduled after the embedding task: it runs only once the task awaits. Were the model
    # run on the loop, the whole embedding would be over by then.
    asyncio.get_running_loop().call_soon(other.set)
    await other.wait()
    assert not embedding.done()  # the loop ran other work while llama.cpp worked
    assert (await embedding).shape == (240, 384)


async def test_a_failure_inside_llama_cpp_is_an_embedder_error(local: LlamaCppEmbedder) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("llama_decode returned -3")

    local._llama.embed = broken
    with pytest.raises(EmbedderError, match=r"llamacpp:.* failed: RuntimeError: llama_decode"):
        await local.embed(["hello"])


async def test_a_batch_past_the_timeout_fails_clearly() -> None:
    embedder = LlamaCppEmbedder(LlamaCppEmbedderConfig(timeout=0.001, batch_size=256))
    await embedder.start()
    try:
        with pytest.raises(EmbedderError, match=r"took longer than 0.001 s for 240 texts"):
            await embedder.embed(SENTENCES * 40)
        assert (await embedder.embed([])).shape == (0, 384)
    finally:
        await embedder.close()


async def test_a_missing_or_broken_model_file_is_refused_at_start(tmp_path: Path) -> None:
    missing = LlamaCppEmbedder(LlamaCppEmbedderConfig(model_path=tmp_path / "none.gguf"))
    with pytest.raises(EmbedderError, match=r"none\.gguf does not exist"):
        await missing.start()
    await missing.close()
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 64)
    broken = LlamaCppEmbedder(LlamaCppEmbedderConfig(model_path=junk))
    with pytest.raises(EmbedderError, match=r"cannot load junk\.gguf as an embedding model"):
        await broken.start()
    await broken.close()


# --- Ollama -----------------------------------------------------------------------------------


@pytest.fixture
async def ollama() -> AsyncIterator[OllamaEmulator]:
    """An Ollama emulator serving the MiniLM embedding model."""
    emulator = OllamaEmulator(
        models=[EmulatedModel(OLLAMA_MODEL, family="bert", context_length=512)]
    )
    await emulator.start()
    await emulator.embedding_model.vectors(["load the model before the timed tests"])
    yield emulator
    await emulator.stop()


def _ollama(url: str, **options: Any) -> Embedder:
    return make_embedder(
        OllamaEmbedderConfig(kind="ollama", host=url, model=OLLAMA_MODEL, **options)
    )


async def test_ollama_gives_the_in_process_vectors(
    ollama: OllamaEmulator, local: LlamaCppEmbedder
) -> None:
    embedder = _ollama(ollama.url, batch_size=4)
    await embedder.start()
    try:
        assert (embedder.dimensions, embedder.max_tokens) == (384, 512)
        vectors = await embedder.embed([*SENTENCES, ""])
        assert min(_cosines(vectors[:-1], await local.embed(SENTENCES))) > 0.999
        assert vectors.shape == (7, 384)  # the empty text too (sent in a list, not alone)
        assert [len(r["input"]) for r in ollama.embed_records] == [1, 4, 3]  # start, batches
        assert embedder.name == f"ollama:{OLLAMA_MODEL}"
        assert embedder.count_tokens("Hello there") >= len("Hello there") // 4
    finally:
        await embedder.close()


async def test_ollama_refused_connection_and_unknown_model() -> None:
    down = _ollama(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(EmbedderError, match=r"is not reachable: is Ollama running\?"):
        await down.start()
    await down.close()


async def test_ollama_unknown_model_says_how_to_pull_it(ollama: OllamaEmulator) -> None:
    embedder = make_embedder(OllamaEmbedderConfig(kind="ollama", host=ollama.url, model="nope"))
    with pytest.raises(
        EmbedderError,
        match=r"model 'nope'\): the model is not there; pull it "
        r"with `ollama pull nope`",
    ):
        await embedder.start()
    await embedder.close()


OLLAMA_FAULTS: list[tuple[EmbedFault, str]] = [
    ("500", r"answered 500: llama runner process has terminated"),
    ("garbage", r"answered with something that is not an /api/embed reply"),
    ("hang", r"did not answer within 1 s"),
    ("wrong_dims", r"vectors of 192 numbers where 384 were expected"),
    ("nan", r"a vector with NaN or infinite values"),
    ("wrong_count", r"returned 1 vectors for 2 texts"),
    ("empty", r"returned an empty vector"),
]


@pytest.mark.parametrize(("fault", "message"), OLLAMA_FAULTS)
async def test_ollama_misbehaving(ollama: OllamaEmulator, fault: EmbedFault, message: str) -> None:
    embedder = _ollama(ollama.url, timeout=1.0)
    await embedder.start()
    try:
        ollama.embed_fault = fault
        with pytest.raises(EmbedderError, match=message):
            await embedder.embed(["one", "two"])
        ollama.embed_fault = None
        assert (await embedder.embed(["one", "two"])).shape == (2, 384)  # it recovers
    finally:
        await embedder.close()


# --- OpenAI-compatible ------------------------------------------------------------------------


@pytest.fixture
async def openai_emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIEmulator]:
    """An OpenAI emulator serving "minilm", with an API key (set in KEY_ENV)."""
    emulator = OpenAIEmulator(models=["minilm"], api_key="sk-test-secret-0123")
    monkeypatch.setenv(KEY_ENV, "sk-test-secret-0123")
    await emulator.start()
    await emulator.embedding_model.vectors(["load the model before the timed tests"])
    yield emulator
    await emulator.stop()


def _openai(url: str, model: str = "minilm", **options: Any) -> Embedder:
    return make_embedder(
        OpenAIEmbedderConfig(
            kind="openai", base_url=url, model=model, api_key_env=KEY_ENV, max_retries=0, **options
        )
    )


async def test_openai_gives_the_in_process_vectors(
    openai_emulator: OpenAIEmulator, local: LlamaCppEmbedder
) -> None:
    embedder = _openai(openai_emulator.base_url, batch_size=4)
    await embedder.start()
    try:
        vectors = await embedder.embed(SENTENCES)
        assert min(_cosines(vectors, await local.embed(SENTENCES))) > 0.999
        # the client asks for base64 and decodes it, as with api.openai.com
        assert {r.get("encoding_format") for r in openai_emulator.embed_records} == {"base64"}
        assert (embedder.dimensions, embedder.max_tokens) == (384, 512)
    finally:
        await embedder.close()


async def test_openai_wrong_key_unknown_model_and_refused_connection(
    openai_emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-9876")
    wrong = _openai(openai_emulator.base_url)
    with pytest.raises(
        EmbedderError, match=rf"refused the API key \(401\): set it in \${KEY_ENV}"
    ) as caught:
        await wrong.start()
    assert "sk-wrong" not in str(caught.value)
    await wrong.close()
    monkeypatch.setenv(KEY_ENV, "sk-test-secret-0123")
    unknown = _openai(openai_emulator.base_url, model="nope")
    with pytest.raises(
        EmbedderError, match=r"the model is not served there \(404: The model `nope`"
    ):
        await unknown.start()
    await unknown.close()
    down = _openai(f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(EmbedderError, match=r"is not reachable: is it running\?"):
        await down.start()
    await down.close()


OPENAI_FAULTS: list[tuple[EmbedFault, str]] = [
    ("500", r"answered 500: The server had an error"),
    ("garbage", r"answered with something that is not an embeddings reply"),
    ("hang", r"did not answer within 1 s"),
    ("wrong_dims", r"vectors of 192 numbers where 384 were expected"),
    ("nan", r"a vector with NaN or infinite values"),
    ("wrong_count", r"returned 1 vectors for 2 texts"),
    ("empty", r"returned an empty vector"),
]


@pytest.mark.parametrize(("fault", "message"), OPENAI_FAULTS)
async def test_openai_misbehaving(
    openai_emulator: OpenAIEmulator, fault: EmbedFault, message: str
) -> None:
    embedder = _openai(openai_emulator.base_url, timeout=1.0)
    await embedder.start()
    try:
        openai_emulator.embed_fault = fault
        with pytest.raises(EmbedderError, match=message) as caught:
            await embedder.embed(["one", "two"])
        assert "sk-test-secret" not in str(caught.value)
        openai_emulator.embed_fault = None
        assert (await embedder.embed(["one", "two"])).shape == (2, 384)
    finally:
        await embedder.close()


async def test_a_real_llama_cpp_server_gives_the_in_process_vectors(
    local: LlamaCppEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await asyncio.to_thread(minilm_gguf.default_gguf)
    monkeypatch.setenv(KEY_ENV, API_KEY)
    with llama_cpp_server(n_ctx=512, model=path, alias="minilm", embedding=True) as server:
        embedder = _openai(server.base_url, batch_size=4)
        await embedder.start()
        try:
            vectors = await embedder.embed(SENTENCES)
        finally:
            await embedder.close()
    cosines = _cosines(vectors, await local.embed(SENTENCES))
    assert min(cosines) > 0.99, cosines


@pytest.mark.parametrize("fault", ["hang", "500", "garbage"])
async def test_a_failing_embedder_costs_a_reply_its_recall_not_the_reply(
    ollama: OllamaEmulator, make_config: MakeConfig, fault: EmbedFault
) -> None:
    config = make_config(
        defaults={"memory": True}, retrieval={"vectors": True, "query_timeout": 1.0},
        memory={"budget": 64}, service={"rate_limit_per_minute": 0},
    )  # fmt: skip
    backend = ScriptedBackend("local", context_window=600)
    embedder = _ollama(ollama.url, timeout=1.0)
    async with build_bot(config, backends={"local": backend}, embedder=embedder) as bot:
        chat = await bot.repo.chat(incoming("").chat)
        filler = [f"We talked about trains, turn {i}." for i in range(60)]
        said = ["My dog's name is Biscuit.", *filler]
        rows = [NewMessage(Role.USER, None, t, 8, "scripted", MessageStatus.COMPLETE) for t in said]
        await bot.repo.add_messages(chat.id, rows)
        await bot.repo.set_window_start(chat.id, (await bot.repo.window(chat.id, 0))[-4].id)
        assert bot.retrieval.indexer is not None
        await bot.retrieval.indexer.drain()
        ollama.embed_fault = fault
        backend.enqueue("It is Biscuit.")
        reply = await say(bot, "What is my dog's name?")
        sources = (await say(bot, "/sources")).text
    assert reply.text == "It is Biscuit."
    assert "Biscuit" in backend.prompts[-1][-1]["content"]  # found by its keywords
    assert "Note: keywords only: the embedder failed (" in sources
