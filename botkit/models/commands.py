"""`botkit models pull | list | rm`: the command line over hub.py, local.py and ollama_pull.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from botkit.config import Config, LlamaCppConfig, OllamaConfig
from botkit.machine import available_memory
from botkit.models.files import AmbiguousModel, human_size
from botkit.models.hub import HubSettings, pull
from botkit.models.local import (
    LocalModel,
    best_fit,
    local_models,
    partial_downloads_in,
    remove,
)
from botkit.models.progress import PullProgress, PullStopped
from botkit.models.spec import FORMS, ModelError, ModelSpec, parse_model_spec

__all__ = ["add_models_parser", "run_models"]

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}  # as sizes are printed


def _ram(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a memory size: use a number with K, M, G or T (e.g. 8G, 512M)"
        )
    return int(float(match[1]) * _UNITS[match[2].upper()])


def _n_ctx(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 256 <= value <= 1_048_576:
        raise argparse.ArgumentTypeError(f"{text!r}: --n-ctx is a token count from 256 to 1048576")
    return value


def add_models_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """The `models` command and its three subcommands."""
    models = sub.add_parser("models", help="pull, list and remove models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    pull_p = with_config(
        models_sub.add_parser(
            "pull",
            help="download a GGUF model from the Hugging Face Hub (or pull one into Ollama)",
            description=f"NAME is {FORMS}; with --ollama, an Ollama model name (llama3.2:3b).",
        )
    )
    pull_p.add_argument("name", metavar="NAME")
    pull_p.add_argument("--ollama", action="store_true", help="pull NAME through Ollama")
    pull_p.add_argument("--host", help="the Ollama daemon (default: the config's, or local)")
    list_p = with_config(
        models_sub.add_parser("list", help="local models: size, memory for n_ctx, what fits")
    )
    list_p.add_argument("--n-ctx", type=_n_ctx, help="context window to size the KV cache for")
    list_p.add_argument(
        "--ram",
        type=_ram,
        help="plan for this much free memory (e.g. 8G) instead of this machine's",
    )
    rm_p = with_config(models_sub.add_parser("rm", help="delete a pulled model from the cache"))
    rm_p.add_argument("name", metavar="NAME", help=f"{FORMS}")
    rm_p.add_argument("--all", action="store_true", help="every model of the repository")


def _ollama_host(config: Config, name: str) -> str:
    ollamas = [b for b in config.backends.values() if isinstance(b, OllamaConfig)]
    for backend in ollamas:
        if backend.model == name:
            return backend.host
    return ollamas[0].host if ollamas else OllamaConfig(kind="ollama", model=name).host


def _ask(exc: AmbiguousModel, spec: ModelSpec) -> ModelSpec | None:
    """On a terminal, ask which of the listed models to pull."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    print(str(exc).split("\n", 1)[0])
    for number, model in enumerate(exc.choices, 1):
        print(f"  {number}. {model.describe()}")
    answer = input(f"which one (1-{len(exc.choices)}, Enter to stop)? ").strip()
    if answer.isdigit() and 1 <= int(answer) <= len(exc.choices):
        return ModelSpec(spec.repo, filename=exc.choices[int(answer) - 1].first.path)
    return None


def _pull(args: argparse.Namespace, config: Config) -> int:
    progress = PullProgress()
    if args.ollama:
        host = args.host or _ollama_host(config, args.name)
        asyncio.run(_pull_ollama(args.name, host, progress))
        print(f"{args.name} is on the Ollama server at {host}")
        return 0
    spec = parse_model_spec(args.name)
    settings = HubSettings.from_env()
    # SIGTERM ends the pull between two blocks, so huggingface_hub removes its partial file
    # (the default action would kill the process and leave it behind).
    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may (tests call main() on one)
        previous = signal.signal(signal.SIGTERM, lambda *_: progress.stop())
    try:
        try:
            path = pull(spec, settings, progress)
        except AmbiguousModel as exc:
            picked = _ask(exc, spec)
            if picked is None:
                raise
            spec = picked
            path = pull(spec, settings, progress)
    except PullStopped:
        print(f"botkit: stopped pulling {spec}; its partial download was removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f'{path}\nuse it: [backends.NAME] model = "{spec}"')
    return 0


async def _pull_ollama(name: str, host: str, progress: PullProgress) -> None:
    from botkit.models.ollama_pull import pull_ollama

    await pull_ollama(name, host, progress)


def _default_n_ctx(config: Config) -> int:
    backend = config.backends[config.defaults.backend]
    return backend.n_ctx if isinstance(backend, LlamaCppConfig) else LlamaCppConfig().n_ctx


def _extra_files(config: Config) -> list[Path]:
    from botkit.backends.base import ModelNotFound
    from botkit.backends.model_files import bundled_model_path

    paths = [b.model_path for b in config.backends.values() if isinstance(b, LlamaCppConfig)]
    extra = [p for p in paths if p is not None]
    with contextlib.suppress(ModelNotFound):  # an installation without the bundled model
        extra.append(bundled_model_path())
    return extra


def _describe(model: LocalModel, models: list[LocalModel], n_ctx: int, free: int | None) -> str:
    """A model's facts and whether it fits, for `models list`."""
    if model.problem:
        return f"{model.name}\n  unreadable: {model.problem}"
    older = (
        f"\n  an older copy of it (from an earlier commit of the repo) also takes "
        f"{human_size(model.older_copies)}; botkit models rm {model.name} removes both"
        if model.older_copies
        else ""
    )
    params = f"{model.parameters / 1e6:,.1f}M parameters" if model.parameters else "parameters ?"
    parts = f" in {len(model.files)} parts" if len(model.files) > 1 else ""
    facts = (
        f"  file {model.path.name}{parts}, {human_size(model.size)}, {params}, "
        f"{model.quantization or 'quantization ?'}, trained context {model.trained_context or '?'}"
    )
    need = model.memory(n_ctx)
    if need is None or model.kv_bytes_per_token is None:
        return (
            f"{model.name}\n{facts}{older}\n  memory: unknown (the header has no attention shape)"
        )
    kv = human_size(model.kv_bytes_per_token * n_ctx)
    sums = f"  memory: {human_size(model.size)} weights + {kv} KV = {human_size(need)}"
    if free is None:
        verdict = ""
    elif need <= free:
        verdict = ": fits"
    else:
        better = best_fit(model, models, n_ctx, free)
        if better is not None:
            need_better = human_size(better.memory(n_ctx) or 0)
            hint = f"; the largest quantization of it that fits: {better.name} ({need_better})"
        elif model.repo:
            hint = (
                f"; no quantization of it here fits (botkit models pull {model.repo} lists "
                "the others with their sizes)"
            )
        else:
            hint = "; pick a smaller quantization"
        verdict = f": too big for {human_size(free)}{hint}"
    return f"{model.name}\n{facts}{older}\n{sums}{verdict}"


def _list(args: argparse.Namespace, config: Config) -> int:
    settings = HubSettings.from_env()
    n_ctx = args.n_ctx or _default_n_ctx(config)
    models = local_models(settings.cache_dir, _extra_files(config))
    free = args.ram if args.ram is not None else available_memory()
    where = "given with --ram" if args.ram is not None else "free now (MemAvailable)"
    print(
        f"models in {settings.cache_dir} and configured files; memory for a {n_ctx}-token "
        f"window; {human_size(free) if free else 'unknown'} {where}"
    )
    if not models:
        print(f"no models yet: botkit models pull {FORMS}")
    for model in models:
        print()
        print(_describe(model, models, n_ctx, free))
    for partial in partial_downloads_in(settings.cache_dir):
        print(
            f"\n{partial.repo}: {partial.count} partial download(s), {human_size(partial.size)}, "
            "left by a stopped pull (or one running now): the next pull of it, or any botkit "
            "models rm of it, removes them"
        )
    return 0


def _rm(args: argparse.Namespace) -> int:
    spec = parse_model_spec(args.name)
    settings = HubSettings.from_env()
    try:
        removed = remove(spec, settings.cache_dir, whole_repo=args.all)
    except AmbiguousModel as exc:
        raise ModelError(f"{exc}\n(or --all to remove every one)") from None
    partials = [p for p in removed if p.name.endswith(".incomplete")]
    if partials:
        print(f"removed {len(partials)} partial download(s) left by a stopped pull")
    for path in removed:
        if path not in partials:
            print(f"removed {path.name}")
    print(f"removed {spec}" if not removed else f"{len(removed)} file(s) removed")
    return 0


def run_models(args: argparse.Namespace, config: Config) -> int:
    """Run `botkit models ...`; errors are printed, with 1 (failed) or 2 (bad arguments)."""
    try:
        if args.models_command == "pull":
            return _pull(args, config)
        if args.models_command == "list":
            return _list(args, config)
        return _rm(args)
    except ValueError as exc:  # a spec that is not one of the forms
        print(f"botkit: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"botkit: {exc}", file=sys.stderr)
        return 1
