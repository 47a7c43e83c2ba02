"""Models on this machine: what each needs in memory for a context window, what fits, and rm.

The Hub cache is walked directly (huggingface_hub's documented layout: models--OWNER--NAME/
snapshots/COMMIT/PATH, symlinks into blobs/). Facts come from each file's GGUF header, not from
its name: parameters (tensor elements), quantization (general.file_type), trained context, and
the KV cache per token (layers × KV heads × head size × 2 × f16, as /model computes it).

A model pulled again after its repo changed is in two snapshots: it is one model here (the
copy main points at), and rm removes every copy. rm deletes only files inside the repo's folder
(cache.py): a snapshot entry that links elsewhere loses its link, never its target.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from botkit.backends.gguf_file import GgufError, read_gguf_header
from botkit.backends.gguf_info import kv_bytes_per_token, quantization_name
from botkit.models.cache import (
    blob_inside,
    delete_file,
    partial_downloads,
    remove_stale_partials,
    repo_dir,
    snapshots,
)
from botkit.models.files import ModelChoiceError, ModelFiles, RepoFile, choose, group_models
from botkit.models.spec import ModelError, ModelSpec

__all__ = [
    "LocalModel",
    "PartialDownloads",
    "best_fit",
    "local_models",
    "partial_downloads_in",
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
    older_copies: int = 0  # bytes of the same model from the repo's earlier commits

    def memory(self, n_ctx: int) -> int | None:
        """Bytes to run it with an n_ctx window: the weights plus the KV cache."""
        if self.kv_bytes_per_token is None:
            return None
        return self.size + self.kv_bytes_per_token * n_ctx


@dataclass(frozen=True, slots=True)
class PartialDownloads:
    """Partial files of a repo's downloads (left by stopped pulls, or one running now)."""

    repo: str
    count: int
    size: int


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


def _repos(cache_dir: Path) -> list[tuple[str, Path]]:
    return [
        (folder.name.removeprefix("models--").replace("--", "/", 1), folder)
        for folder in sorted(cache_dir.glob("models--*--*"))
    ]


def _snapshot_models(folder: Path) -> list[tuple[Path, ModelFiles]]:
    """Every model of every snapshot of a repo, the snapshot main points at first."""
    found = []
    for snapshot in snapshots(folder):
        files = [
            RepoFile(p.relative_to(snapshot).as_posix(), p.stat().st_size)
            for p in snapshot.rglob("*.gguf")
            if p.is_file()
        ]
        found += [(snapshot, m) for m in group_models(files)]
    return found


def local_models(cache_dir: Path, extra: list[Path] | None = None) -> list[LocalModel]:
    """Every GGUF model in the Hub cache (split ones once, incomplete ones left out, one pulled
    at several commits once), then the extra files (the bundled model, configured model_path
    files)."""
    models: list[LocalModel] = []
    seen: set[Path] = set()
    for repo, folder in _repos(cache_dir):
        copies: dict[str, list[tuple[Path, ModelFiles]]] = {}
        for snapshot, model in _snapshot_models(folder):
            if model.complete:
                copies.setdefault(model.name, []).append((snapshot, model))
        for (snapshot, model), *older in copies.values():
            paths = [snapshot / p.path for p in model.parts]
            if paths[0].resolve() in seen:
                continue
            seen.add(paths[0].resolve())
            blobs = {(s / p.path).resolve() for s, m in older for p in m.parts}
            extra_bytes = sum(b.stat().st_size for b in blobs - {p.resolve() for p in paths})
            name = f"{repo}:{model.quant}" if model.quant else f"hf://{repo}/{model.first.path}"
            found = read_local_model(name, repo, paths, quant_hint=model.quant)
            models.append(replace(found, older_copies=extra_bytes))
    for path in extra or []:
        if path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            models.append(read_local_model(path.name, None, [path]))
    return models


def partial_downloads_in(cache_dir: Path) -> list[PartialDownloads]:
    """The repos that have partial downloads, with their count and size."""
    found = []
    for repo, folder in _repos(cache_dir):
        sizes = [p.stat().st_size for p in partial_downloads(folder)]
        if sizes:
            found.append(PartialDownloads(repo, len(sizes), sum(sizes)))
    return found


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
    snapshot uses), and the repo's partial downloads; the whole repository folder with
    whole_repo or once nothing is left. Returns the files removed; ModelError says what is
    there when nothing matches."""
    folder = repo_dir(cache_dir, spec.repo)
    if not folder.is_dir():
        raise ModelError(f"{spec.repo} is not in {cache_dir} (botkit models list shows what is)")
    removed = [partial for partial, _ in remove_stale_partials(cache_dir, folder)]
    entries = _snapshot_models(folder)
    if not whole_repo:
        # One model per name for the choice: a copy per snapshot is still one model.
        try:
            chosen = choose(spec, list({m.name: m for _, m in reversed(entries)}.values()))
        except ModelChoiceError:
            if removed and not entries:  # only the partial downloads were here
                shutil.rmtree(folder)
                return removed
            raise
        targets = [snap / p.path for snap, m in entries if m.name == chosen.name for p in m.parts]
        for target in targets:
            if not target.parent.resolve().is_relative_to((folder / "snapshots").resolve()):
                raise ModelError(
                    f"{target} is in a folder that links out of the cache (to "
                    f"{target.parent.resolve()}); botkit deletes nothing outside {cache_dir}: "
                    "remove that link yourself"
                )
        for target in targets:
            delete_file(target, folder, with_blob=_unused(target, folder))
            removed.append(target)
    if whole_repo or not _snapshot_models(folder):
        removed += [p for p in (folder / "snapshots").rglob("*.gguf") if p.is_symlink()]
        shutil.rmtree(folder)
    return removed


def _unused(entry: Path, folder: Path) -> bool:
    """Whether no other snapshot entry shares this one's blob."""
    blob = blob_inside(entry, folder)
    return not any(
        p != entry and p.resolve() == blob
        for p in (folder / "snapshots").rglob("*")
        if p.is_symlink()
    )
