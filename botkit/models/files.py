"""A repository's GGUF files as models: split parts grouped, quantizations named, one chosen.

Pure functions over file names and sizes, shared by the Hub listing and the local cache. A
split model (llama.cpp's gguf-split: `NAME-00001-of-00003.gguf` …) is one model whose first
part is the file llama.cpp opens; it finds the others beside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from botkit.models.spec import ModelError, ModelSpec

__all__ = [
    "AmbiguousModel",
    "ModelChoiceError",
    "ModelFiles",
    "RepoFile",
    "choose",
    "group_models",
    "human_size",
    "quant_of",
]

_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# Quantization names as llama.cpp's quantize tool and the big GGUF publishers write them in
# file names: Q4_K_M, Q8_0, IQ4_XS, Q6_K_L, UD-Q4_K_XL, F16, BF16, MXFP4 …
_QUANT = re.compile(r"^(?:I?Q\d(?:_[A-Z0-9]+)*|B?F16|F32|FP16|FP32|MXFP4(?:_MOE)?|TQ\d_\d)$")


def human_size(n: float) -> str:
    """Bytes as people read them: "98.4 MB", "4.68 GB"."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB"


@dataclass(frozen=True, slots=True)
class RepoFile:
    """One file of a repository: its path there, size, and the sha256 the Hub lists (LFS)."""

    path: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """One model: a single GGUF file, or every part of a split one (in order)."""

    name: str  # the path without the split suffix and .gguf
    quant: str | None
    parts: tuple[RepoFile, ...]
    expected_parts: int

    @property
    def size(self) -> int:
        """Bytes of all parts."""
        return sum(p.size for p in self.parts)

    @property
    def first(self) -> RepoFile:
        """The file llama.cpp is given (the first part of a split model)."""
        return self.parts[0]

    @property
    def complete(self) -> bool:
        """Whether every part of a split model is here."""
        return len(self.parts) == self.expected_parts

    def describe(self) -> str:
        """One line: quantization, size, parts, path."""
        split = f", {self.expected_parts} parts" if self.expected_parts > 1 else ""
        return f"{self.quant or '?':<8} {human_size(self.size):>9}{split}  {self.first.path}"


def quant_of(path: str) -> str | None:
    """The quantization named in a GGUF file name ("…-Q4_K_M.gguf" → "Q4_K_M"), if any."""
    stem = _SPLIT.sub("", path.rsplit("/", 1)[-1])
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    for token in reversed(re.split(r"[-.]", stem)):
        if _QUANT.match(token.upper()):
            return token.upper()
    return None


def group_models(files: Iterable[RepoFile]) -> list[ModelFiles]:
    """The GGUF models among files, splits grouped, sorted by size. Vision projectors
    (mmproj-*.gguf) are left out: they are not chat models."""
    groups: dict[str, list[tuple[int, int, RepoFile]]] = {}
    for file in files:
        base = file.path.rsplit("/", 1)[-1].lower()
        if not base.endswith(".gguf") or base.startswith("mmproj"):
            continue
        split = _SPLIT.search(file.path)
        if split:
            name, index, count = file.path[: split.start()], int(split[1]), int(split[2])
        else:
            name, index, count = file.path[: -len(".gguf")], 1, 1
        groups.setdefault(name, []).append((index, count, file))
    models = []
    for name, members in groups.items():
        members.sort(key=lambda m: m[0])
        models.append(
            ModelFiles(
                name=name,
                quant=quant_of(members[0][2].path),
                parts=tuple(m[2] for m in members),
                expected_parts=max(m[1] for m in members),
            )
        )
    return sorted(models, key=lambda m: (m.size, m.name))


class ModelChoiceError(ModelError):
    """No model of the repository fits the spec; the message lists what there is."""


class AmbiguousModel(ModelChoiceError):
    """Several models fit: `choices` lists them, to ask which one."""

    def __init__(self, message: str, choices: list[ModelFiles]) -> None:
        super().__init__(message)
        self.choices = choices


def _listing(spec: ModelSpec, models: list[ModelFiles]) -> str:
    return "\n".join(f"  {m.describe()}" for m in models)


def choose(spec: ModelSpec, models: list[ModelFiles]) -> ModelFiles:
    """The model spec names among models; ModelChoiceError lists the alternatives."""
    if not models:
        raise ModelChoiceError(
            f"{spec.repo} has no GGUF model files (botkit runs GGUF models with llama.cpp; "
            "repositories of them usually end in -GGUF)"
        )
    if spec.filename is not None:
        for model in models:
            if any(p.path == spec.filename for p in model.parts):
                return model
        raise ModelChoiceError(
            f"{spec.repo} has no file {spec.filename}; its GGUF models:\n{_listing(spec, models)}"
        )
    if spec.quant is None:
        if len(models) == 1:
            return models[0]
        raise AmbiguousModel(
            f"{spec.repo} has {len(models)} GGUF models; name one with "
            f"{spec.repo}:QUANT (or hf://{spec.repo}/FILE.gguf):\n{_listing(spec, models)}",
            models,
        )
    matches = [m for m in models if m.quant == spec.quant.upper()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        quants = ", ".join(sorted({m.quant for m in models if m.quant})) or "none named"
        raise ModelChoiceError(
            f"{spec.repo} has no {spec.quant} model; its quantizations: {quants}\n"
            f"{_listing(spec, models)}"
        )
    raise AmbiguousModel(
        f"{len(matches)} models of {spec.repo} are {spec.quant}; name one with "
        f"hf://{spec.repo}/FILE.gguf:\n{_listing(spec, matches)}",
        matches,
    )
