"""Models on this machine: what each needs in memory for a context window, what fits, and rm.

The Hub cache is walked directly (huggingface_hub's documented layout: models--OWNER--NAME/
snapshots/COMMIT/PATH, symlinks into blobs/). Facts come from each file's GGUF header, not from
its name: parameters (tensor elements), quantization (general.file_type), trained context, and
the KV cache per token (layers × KV heads × head size × 2 × f16, as /model computes it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from botkit.backends.gguf_file import GgufError, read_gguf_header
from botkit.backends.gguf_info import kv_bytes_per_token, quantization_name
from botkit.models.files import ModelFiles, RepoFile, choose, group_models
from botkit.models.spec import ModelError, ModelSpec

__all__ = [
    "LocalModel",
    "best_fit",
    "local_models",
    "read_local_model",
    "remove",
]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A model on disk and what its GGUF header says."""

    name: str  # OWNER/REPO:QUANT for Hub models, else the file name
    repo: str | None
    path: Path  # the file llama.cpp opens (the first part of a split model)
    files: tuple[Path, ...]
    size: int
    parameters: int
    quantization: str | None
    trained_context: int | None
    kv_bytes_per_token: int | None
    problem: str | None = None  # an unreadable header: what is wrong

    def memory(self, n_ctx: int) -> int | None:
        """Bytes to run it with an n_ctx window: the weights plus the KV cache."""
        if self.kv_bytes_per_token is None:
            return None
        return self.size + self.kv_bytes_per_token * n_ctx


def read_local_model(
    name: str, repo: str | None, files: list[Path], *, quant_hint: str | None = None
) -> LocalModel:
    """A LocalModel from its files (the first is the one llama.cpp opens)."""
    try:
        size = sum(f.stat().st_size for f in files)
        headers = [read_gguf_header(f) for f in files]
    except (GgufError, OSError) as exc:  # one bad file is listed as such, not a traceback
        problem = str(exc)
        return LocalModel(name, repo, files[0], tuple(files), 0, 0, quant_hint, None, None, problem)
    meta = headers[0].metadata
    arch = headers[0].architecture
    trained = meta.get(f"{arch}.context_length")
    return LocalModel(
        name=name,
        repo=repo,
        path=files[0],
        files=tuple(files),
        size=size,
        parameters=sum(h.parameters for h in headers),
        quantization=quantization_name(meta.get("general.file_type")) or quant_hint,
        trained_context=int(trained) if trained and trained.isdigit() else None,
        kv_bytes_per_token=kv_bytes_per_token(meta),
    )


def _snapshot_models(cache_dir: Path) -> list[tuple[str, Path, ModelFiles]]:
    found = []
    for folder in sorted(cache_dir.glob("models--*--*")):
        repo = folder.name.removeprefix("models--").replace("--", "/", 1)
        for snapshot in sorted((folder / "snapshots").glob("*")):
            files = [
                RepoFile(p.relative_to(snapshot).as_posix(), p.stat().st_size)
                for p in snapshot.rglob("*.gguf")
                if p.is_file()
            ]
            found += [(repo, snapshot, m) for m in group_models(files)]
    return found


def local_models(cache_dir: Path, extra: list[Path] | None = None) -> list[LocalModel]:
    """Every GGUF model in the Hub cache (split ones once, incomplete ones left out), then the
    extra files (the bundled model, configured model_path files)."""
    models: list[LocalModel] = []
    seen: set[Path] = set()
    for repo, snapshot, model in _snapshot_models(cache_dir):
        paths = [snapshot / p.path for p in model.parts]
        if not model.complete or paths[0].resolve() in seen:
            continue
        seen.add(paths[0].resolve())
        name = f"{repo}:{model.quant}" if model.quant else f"hf://{repo}/{model.first.path}"
        models.append(read_local_model(name, repo, paths, quant_hint=model.quant))
    for path in extra or []:
        if path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            models.append(read_local_model(path.name, None, [path]))
    return models


def best_fit(
    model: LocalModel, models: list[LocalModel], n_ctx: int, free: int
) -> LocalModel | None:
    """The largest model of the same repository that fits in `free` bytes at n_ctx."""
    fitting = [
        m
        for m in models
        if m.repo is not None
        and m.repo == model.repo
        and (need := m.memory(n_ctx)) is not None
        and need <= free
    ]
    return max(fitting, key=lambda m: m.size, default=None)


def remove(spec: ModelSpec, cache_dir: Path, *, whole_repo: bool = False) -> list[Path]:
    """Delete a model's files from the cache (every snapshot's copy, and the blobs no other
    snapshot uses); the whole repository folder with whole_repo or once nothing is left.
    Returns the files removed; ModelError says what is there when nothing matches."""
    folder = cache_dir / ("models--" + spec.repo.replace("/", "--"))
    if not folder.is_dir():
        raise ModelError(f"{spec.repo} is not in {cache_dir} (botkit models list shows what is)")
    entries = [(snap, m) for repo, snap, m in _snapshot_models(cache_dir) if repo == spec.repo]
    removed: list[Path] = []
    if not whole_repo:
        chosen = choose(spec, [m for _, m in entries])
        targets = [snap / p.path for snap, m in entries if m.name == chosen.name for p in m.parts]
        blobs = {t.resolve() for t in targets}
        for target in targets:
            target.unlink()
            removed.append(target)
        still_used = {p.resolve() for p in (folder / "snapshots").rglob("*") if p.is_symlink()}
        for blob in blobs - still_used:
            blob.unlink(missing_ok=True)
    if whole_repo or not any(p.is_file() for p in (folder / "snapshots").rglob("*.gguf")):
        removed += [p for p in (folder / "snapshots").rglob("*.gguf") if p.is_symlink()]
        shutil.rmtree(folder)
    return removed
