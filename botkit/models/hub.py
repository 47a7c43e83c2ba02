"""GGUF models from the Hugging Face Hub: list a repo, pull the chosen model, verify it.

Everything on the wire is huggingface_hub's: `HfApi.model_info(files_metadata=True)` lists the
files with their sizes and LFS sha256, `hf_hub_download` fetches each into its cache (a dropped
connection resumes with a Range request; a file already in the cache is never fetched again).
`HF_ENDPOINT` (a mirror), `HF_HOME` / `HF_HUB_CACHE` (where the cache lives) and `HF_TOKEN` (gated
and private repos; also the systemd credential `hf_token`) are read at each call, not at import.

huggingface_hub checks the size only, and links a file into its snapshot before botkit has
looked at it, so each file is checked here too (verify.py) and marked once it passes
(cache.py): a file without the mark, left by a pull or a start killed while checking it, is
checked again before it is used, and one that fails is deleted (then pulled again). Partial
downloads left by killed pulls are removed when the next pull of the repo starts.

Errors say what to do, and whether trying again later may help (`transient`): `botkit run`
exits 1 for those, so systemd restarts it, and 2 for the rest, which need a person.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from botkit.models.cache import (
    delete_file,
    is_verified,
    mark_verified,
    remove_stale_partials,
    repo_dir,
    snapshots,
)
from botkit.models.files import ModelFiles, RepoFile, choose, group_models, human_size
from botkit.models.progress import PullProgress
from botkit.models.spec import ModelError, ModelSpec
from botkit.models.verify import file_problems
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
    """A model could not be pulled; the message says why and what to do. `transient`: the
    network or the Hub failed, and the same pull later may work."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ModelVerifyError(ModelPullError):
    """A downloaded file is not what the Hub lists; it has been deleted (pulling it again may
    work: the network or a mirror may have damaged it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


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


def _hub_error(exc: BaseException, spec: ModelSpec, settings: HubSettings) -> ModelPullError:
    """A message for a huggingface_hub or transport error (never the token, never a URL
    with a signature in it)."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
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
    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) else None
    if status == 401 and settings.token is None:
        return ModelPullError(
            f"{where} asks for a login to download {spec.repo}: it is gated or private. Set "
            f"{TOKEN_ENV} to a read token of an account that has access (for a gated model, "
            "accept its terms on its page first)"
        )
    if status == 401:
        return ModelPullError(
            f"{where} refused the token in {TOKEN_ENV} (invalid or expired): make a new read "
            "token, or unset it for public models"
        )
    if status is not None and (status >= 500 or status in (408, 429)):
        return ModelPullError(
            f"{where} answered HTTP {status} for {spec.repo} (trouble on its side): try again "
            "later",
            transient=True,
        )
    if status is not None:
        return ModelPullError(f"{where} answered HTTP {status} for {spec.repo}")
    if isinstance(exc, OfflineModeIsEnabled):
        return ModelPullError(
            f"HF_HUB_OFFLINE is set, so {spec} cannot be pulled (a model already pulled is used "
            "without the network)"
        )
    if isinstance(exc, httpx2.HTTPError | LocalEntryNotFoundError):
        # huggingface_hub raises LocalEntryNotFoundError when its HEAD request failed (no
        # connection, a timeout) and the file is not in the cache either.
        return ModelPullError(
            f"cannot reach {where} ({type(exc).__name__}); check the network, or set "
            "HF_ENDPOINT to a mirror",
            transient=True,
        )
    return ModelPullError(f"pulling {spec} failed: {exc}")


def _hub_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    return (HfHubHTTPError, httpx2.HTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError)


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


def _disk_full(part: RepoFile, folder: Path) -> ModelPullError:
    blobs = folder / "blobs"
    free = shutil.disk_usage(blobs if blobs.is_dir() else folder.parent).free
    return ModelPullError(
        f"the disk is full: {part.path} needs {human_size(part.size)} in {blobs}, which has "
        f"{human_size(free)} free. Free some space (botkit models list shows the models here, "
        "botkit models rm removes one) or move the cache to a bigger disk with HF_HOME"
    )


def _fetch(
    spec: ModelSpec,
    commit: str,
    part: RepoFile,
    label: str,
    settings: HubSettings,
    progress: PullProgress,
) -> Path:
    from huggingface_hub import hf_hub_download

    folder = repo_dir(settings.cache_dir, spec.repo)
    progress.message(f"pulling {label}, {human_size(part.size)}")
    try:
        return Path(
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
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full(part, folder) from None
        # huggingface_hub's size check ("Consistency check failed") after its retries.
        raise ModelVerifyError(
            f"{part.path}: the download was cut short ({exc.strerror or exc}); run the pull again"
        ) from None


def _download(
    spec: ModelSpec, commit: str, model: ModelFiles, settings: HubSettings, progress: PullProgress
) -> Path:
    from huggingface_hub import try_to_load_from_cache

    folder = repo_dir(settings.cache_dir, spec.repo)
    paths: list[Path] = []
    count = len(model.parts)
    for number, part in enumerate(model.parts, 1):
        label = part.path if count == 1 else f"{part.path} (part {number} of {count})"
        cached = try_to_load_from_cache(
            spec.repo, part.path, cache_dir=settings.cache_dir, revision=commit
        )
        path = Path(cached) if isinstance(cached, str) else None
        if path is not None and is_verified(folder, path.resolve()):
            progress.message(f"{label}: already here")
            paths.append(path)
            continue
        if path is not None:
            # Linked by huggingface_hub, never checked: a pull or a start stopped while
            # checking it.
            progress.message(f"{label}: here but not checked yet; checking it")
            problem = file_problems(path, label, progress, size=part.size, sha256=part.sha256)
            if problem is None:
                mark_verified(folder, path.resolve())
                paths.append(path)
                continue
            progress.message(f"{label}: {problem}; deleting it and pulling it again")
            delete_file(path, folder)
        path = _fetch(spec, commit, part, label, settings, progress)
        problem = file_problems(path, label, progress, size=part.size, sha256=part.sha256)
        if problem is not None:
            delete_file(path, folder)
            raise ModelVerifyError(
                f"{part.path} is corrupt: {problem}. It has been deleted; run the pull again "
                "(if it fails again, the mirror or the network is damaging it)"
            )
        mark_verified(folder, path.resolve())
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
    folder = repo_dir(settings.cache_dir, spec.repo)
    left = remove_stale_partials(settings.cache_dir, folder)
    if left:
        progress.message(
            f"removed {len(left)} partial download(s) of {spec.repo} left by a stopped pull "
            f"({human_size(sum(size for _, size in left))})"
        )
    path = _download(spec, commit, model, settings, progress)
    # The commit main pointed at, as huggingface_hub records a branch (refs/<branch>): a later
    # start finds the model from here without asking the Hub.
    refs = folder / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(commit, encoding="utf-8")
    progress.message(f"{spec}: {model.quant or 'GGUF'}, {human_size(model.size)} at {path}")
    return path


def find_local(
    spec: ModelSpec, cache_dir: Path, progress: PullProgress | None = None
) -> Path | None:
    """The model's path if it is complete and checked in the cache (no network); else None.
    The snapshot main points at is looked in first, then older ones (a repo updated since the
    pull). A file never checked (a pull stopped while checking it, another tool's download) is
    checked now against the sha256 its blob is named by; one that fails is deleted."""
    from botkit.models.files import ModelChoiceError

    folder = repo_dir(cache_dir, spec.repo)
    for snapshot in snapshots(folder):
        files = [
            RepoFile(p.relative_to(snapshot).as_posix(), p.stat().st_size)
            for p in snapshot.rglob("*.gguf")
            if p.is_file()  # follows the symlink: a blob removed under it does not count
        ]
        try:
            model = choose(spec, group_models(files))
        except ModelChoiceError:
            continue
        if model.complete and _checked(folder, snapshot, model, progress or PullProgress()):
            return snapshot / model.first.path
    return None


def _checked(folder: Path, snapshot: Path, model: ModelFiles, progress: PullProgress) -> bool:
    for part in model.parts:
        path = snapshot / part.path
        if is_verified(folder, path.resolve()):
            continue
        problem = file_problems(path, part.path, progress)
        if problem is not None:
            progress.message(f"{path}: {problem}; deleted")
            delete_file(path, folder)
            return False
        mark_verified(folder, path.resolve())
    return True


def resolve(
    spec: ModelSpec, settings: HubSettings | None = None, progress: PullProgress | None = None
) -> Path:
    """The model's local path: from the cache, or pulled (once) with progress."""
    settings = settings or HubSettings.from_env()
    progress = progress or PullProgress()
    found = find_local(spec, settings.cache_dir, progress)
    if found is not None:
        return found
    progress.message(f"{spec} is not in {settings.cache_dir}: pulling it")
    return pull(spec, settings, progress)
