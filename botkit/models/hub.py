"""GGUF models from the Hugging Face Hub: list a repo, pull the chosen model, verify it.

Everything on the wire is huggingface_hub's: `HfApi.model_info(files_metadata=True)` lists the
files with their sizes and LFS sha256, `hf_hub_download` fetches each into its cache (a dropped
connection resumes with a Range request; a file already in the cache is never fetched again).
`HF_ENDPOINT` (a mirror), `HF_HOME` / `HF_HUB_CACHE` (where the cache lives) and `HF_TOKEN` (gated
and private repos; also the systemd credential `hf_token`) are read at each call, not at import.

huggingface_hub checks the size only, so each file is checked here too: its size and sha256
against the listing, and its GGUF header. A file that fails is deleted from the cache before
the error is raised: nothing corrupt is left for the next start to load.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from botkit.backends.gguf_file import GgufError, read_gguf_header
from botkit.models.files import ModelFiles, RepoFile, choose, group_models, human_size
from botkit.models.progress import PullProgress
from botkit.models.spec import ModelError, ModelSpec
from botkit.secrets import read_secret

__all__ = [
    "HubSettings",
    "ModelPullError",
    "ModelVerifyError",
    "find_local",
    "list_remote",
    "pull",
    "repo_dir",
    "resolve",
]

DEFAULT_ENDPOINT = "https://huggingface.co"
TOKEN_ENV, TOKEN_CREDENTIAL = "HF_TOKEN", "hf_token"


class ModelPullError(ModelError):
    """A model could not be pulled; the message says why and what to do."""


class ModelVerifyError(ModelPullError):
    """A downloaded file is not what the Hub lists; it has been deleted."""


@dataclass(frozen=True, slots=True)
class HubSettings:
    """Where the Hub and the cache are, and the token (never printed)."""

    endpoint: str
    cache_dir: Path
    token: str | None

    @classmethod
    def from_env(cls) -> HubSettings:
        """huggingface_hub's own variables, read now (its constants are read at import)."""
        env = os.environ
        home = env.get("HF_HOME") or str(
            Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
        )
        cache = env.get("HF_HUB_CACHE") or str(Path(home) / "hub")
        return cls(
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            cache_dir=Path(cache).expanduser(),
            token=read_secret(TOKEN_ENV, TOKEN_CREDENTIAL),
        )


def repo_dir(cache_dir: Path, repo: str) -> Path:
    """The repo's folder in the cache (huggingface_hub's layout: models--OWNER--NAME)."""
    return cache_dir / ("models--" + repo.replace("/", "--"))


def _hub_error(exc: BaseException, spec: ModelSpec, settings: HubSettings) -> ModelPullError:
    """A message for a huggingface_hub or transport error (never the token, never a URL
    with a signature in it)."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = settings.endpoint
    if isinstance(exc, GatedRepoError):
        if settings.token is None:
            return ModelPullError(
                f"{spec.repo} is gated: accept its terms on its page on {where} with your "
                f"account, then set {TOKEN_ENV} to a read token of that account"
            )
        return ModelPullError(
            f"{spec.repo} is gated and the token in {TOKEN_ENV} has no access to it: accept "
            f"its terms on its page on {where} with the token's account"
        )
    if isinstance(exc, RepositoryNotFoundError):
        hint = "" if settings.token else f"; a private one needs {TOKEN_ENV}"
        return ModelPullError(
            f"there is no model repository {spec.repo} on {where} (check the name{hint})"
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelPullError(f"{spec.repo} on {where} has no branch 'main'")
    if isinstance(exc, RemoteEntryNotFoundError):
        return ModelPullError(
            f"{spec.repo} on {where} no longer has a file it listed; run the pull again"
        )
    if isinstance(exc, HfHubHTTPError) and exc.response.status_code == 401:
        return ModelPullError(
            f"{where} refused the token in {TOKEN_ENV} (invalid or expired): make a new read "
            "token, or unset it for public models"
        )
    if isinstance(exc, HfHubHTTPError):
        return ModelPullError(f"{where} answered HTTP {exc.response.status_code} for {spec.repo}")
    if isinstance(exc, OfflineModeIsEnabled):
        return ModelPullError(
            f"HF_HUB_OFFLINE is set, so {spec} cannot be pulled (a model already pulled is used "
            "without the network)"
        )
    if isinstance(exc, httpx2.HTTPError):
        return ModelPullError(
            f"cannot reach {where} ({type(exc).__name__}); check the network, or set "
            "HF_ENDPOINT to a mirror"
        )
    return ModelPullError(f"pulling {spec} failed: {exc}")


def _hub_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    return (HfHubHTTPError, httpx2.HTTPError, OfflineModeIsEnabled)


def list_remote(spec: ModelSpec, settings: HubSettings) -> tuple[str, list[ModelFiles]]:
    """The repo's commit on main and its GGUF models (one request: the model-info API)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.endpoint, token=settings.token)
    try:
        info = api.model_info(spec.repo, files_metadata=True)
    except _hub_errors() as exc:
        raise _hub_error(exc, spec, settings) from None
    files = [
        RepoFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None)
        for s in info.siblings or []
    ]
    if info.sha is None:
        raise ModelPullError(f"{settings.endpoint} did not say which commit {spec.repo} is at")
    return info.sha, group_models(files)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, part: RepoFile, progress: PullProgress) -> None:
    """Size, sha256 and GGUF header of a downloaded file; a bad one is deleted."""
    blob = path.resolve()
    problems = []
    size = blob.stat().st_size
    if size != part.size:
        problems.append(f"it has {size} bytes, the Hub lists {part.size}")
    elif part.sha256:
        if part.size > 500_000_000:
            progress.message(f"checking the sha256 of {part.path} …")
        digest = _sha256(blob)
        if digest != part.sha256:
            problems.append(f"its sha256 is {digest}, the Hub lists {part.sha256}")
    if not problems:
        try:
            read_gguf_header(blob)
        except GgufError as exc:
            problems.append(str(exc))
    if problems:
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise ModelVerifyError(
            f"{part.path} is corrupt: {'; '.join(problems)}. It has been deleted; run the "
            "pull again (if it fails again, the mirror or the network is damaging it)"
        )


def _download(
    spec: ModelSpec, commit: str, model: ModelFiles, settings: HubSettings, progress: PullProgress
) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    paths: list[Path] = []
    count = len(model.parts)
    for number, part in enumerate(model.parts, 1):
        label = part.path if count == 1 else f"{part.path} (part {number} of {count})"
        cached = try_to_load_from_cache(
            spec.repo, part.path, cache_dir=settings.cache_dir, revision=commit
        )
        if isinstance(cached, str):
            progress.message(f"{label}: already here")
            path = Path(cached)
        else:
            progress.message(f"pulling {label}, {human_size(part.size)}")
            try:
                path = Path(
                    hf_hub_download(
                        spec.repo,
                        part.path,
                        revision=commit,
                        cache_dir=settings.cache_dir,
                        endpoint=settings.endpoint,
                        token=settings.token,
                        tqdm_class=progress.bar_class(label),
                    )
                )
            except _hub_errors() as exc:
                raise _hub_error(exc, spec, settings) from None
            except OSError as exc:  # huggingface_hub's size check ("Consistency check failed")
                raise ModelVerifyError(
                    f"{part.path}: the download was cut short ({exc.strerror or exc}); run the "
                    "pull again"
                ) from None
            _verify(path, part, progress)
        paths.append(path)
    return paths[0]  # llama.cpp opens the first part and finds the others beside it


def pull(
    spec: ModelSpec, settings: HubSettings | None = None, progress: PullProgress | None = None
) -> Path:
    """Download the model spec names (unless it is in the cache) and return the path to give
    llama.cpp. ModelPullError (or its ModelChoiceError from files.choose) says what failed."""
    settings = settings or HubSettings.from_env()
    progress = progress or PullProgress()
    commit, models = list_remote(spec, settings)
    model = choose(spec, models)
    if not model.complete:
        raise ModelPullError(
            f"{spec.repo} lists {len(model.parts)} of the {model.expected_parts} parts of "
            f"{model.name}; it cannot be loaded"
        )
    path = _download(spec, commit, model, settings, progress)
    # The commit main pointed at, as huggingface_hub records a branch (refs/<branch>): a later
    # start finds the model from here without asking the Hub.
    refs = repo_dir(settings.cache_dir, spec.repo) / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(commit, encoding="utf-8")
    progress.message(f"{spec}: {model.quant or 'GGUF'}, {human_size(model.size)} at {path}")
    return path


def find_local(spec: ModelSpec, cache_dir: Path) -> Path | None:
    """The model's path if it is complete in the cache (no network); else None. The snapshot
    main points at is looked in first, then older ones (a repo updated since the pull)."""
    from botkit.models.files import ModelChoiceError

    folder = repo_dir(cache_dir, spec.repo)
    ref = folder / "refs" / "main"
    main = folder / "snapshots" / ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
    others = sorted(
        (p for p in (folder / "snapshots").glob("*") if p != main),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for snapshot in [main, *others] if main is not None else others:
        files = [
            RepoFile(p.relative_to(snapshot).as_posix(), p.stat().st_size)
            for p in snapshot.rglob("*.gguf")
            if p.is_file()  # follows the symlink: a blob removed under it does not count
        ]
        try:
            model = choose(spec, group_models(files))
        except ModelChoiceError:
            continue
        if model.complete:
            return snapshot / model.first.path
    return None


def resolve(
    spec: ModelSpec, settings: HubSettings | None = None, progress: PullProgress | None = None
) -> Path:
    """The model's local path: from the cache, or pulled (once) with progress."""
    settings = settings or HubSettings.from_env()
    found = find_local(spec, settings.cache_dir)
    if found is not None:
        return found
    progress = progress or PullProgress()
    progress.message(f"{spec} is not in {settings.cache_dir}: pulling it")
    return pull(spec, settings, progress)
