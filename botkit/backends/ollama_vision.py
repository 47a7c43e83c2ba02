"""Images on Ollama: whether the model can see, and what an image costs before the server says.

Whether it can see: `/api/show` lists the model's `capabilities`; "vision" is among them for a
model with a vision encoder or projector (server/images.go, Model.Capabilities). Ollama's chat
handler does not check that capability: a model without it takes the request and drops the
images without a word (runner/llamarunner/runner.go and runner/ollamarunner/runner.go, inputs:
the `[img-N]` tags are only split out for a multimodal model; v0.12.11), and the model then
answers about a picture it never saw. So botkit sends images only to a model that lists
"vision". A server too old to list capabilities (before 0.6.4) cannot tell: its models are
taken as blind unless the backend's config says `vision = true`.

What an image costs (Ollama has no tokenizer endpoint), until a reply's `prompt_eval_count`
tells (image_cost.ImageCost), from the model's `model_info`:
- `<arch>.mm.tokens_per_image` (Gemma 3: 256): the projector's own figure;
- else `<arch>.vision.image_size` / `patch_size` (and `spatial_merge_size`): the patches of one
  image, which errs high for a projector that pools them;
- else 768, the figure Ollama's own prompt truncation uses for an image (server/prompt.go,
  chatPrompt: "Clip images are represented as 768 tokens"). Models whose projector is a
  separate file (LLaVA) keep its details in `projector_info`, which the `ollama` client drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["OLLAMA_IMAGE_TOKENS", "image_estimate", "vision_reason"]

OLLAMA_IMAGE_TOKENS = 768  # server/prompt.go chatPrompt's imageNumTokens


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)


def image_estimate(info: Mapping[str, Any]) -> tuple[int, str]:
    """One image's tokens as far as model_info tells, and how that was found (for /model)."""
    arch = info.get("general.architecture", "")
    per_image = _positive(info.get(f"{arch}.mm.tokens_per_image"))
    if per_image is not None:
        return per_image, f"{per_image} per image ({arch}.mm.tokens_per_image)"
    size = _positive(info.get(f"{arch}.vision.image_size"))
    patch = _positive(info.get(f"{arch}.vision.patch_size"))
    if size is not None and patch is not None:
        merge = _positive(info.get(f"{arch}.vision.spatial_merge_size")) or 1
        patches = max(1, (size // patch) ** 2 // merge**2)
        return patches, f"{patches} per image (the vision encoder's patches: {size}/{patch} px)"
    return OLLAMA_IMAGE_TOKENS, f"{OLLAMA_IMAGE_TOKENS} per image (Ollama's own figure)"


def vision_reason(
    capabilities: list[str] | None, configured: Literal["auto"] | bool, model: str, name: str
) -> str | None:
    """None when images may be sent to this model; otherwise why not."""
    if configured is False:
        return f"vision = false in the config of backend {name}"
    if configured is True or (capabilities is not None and "vision" in capabilities):
        return None
    if capabilities is None:
        return (
            f"cannot tell whether {model} can see images: this Ollama server lists no "
            f"capabilities (older than 0.6.4); set vision = true for backend {name} if it can"
        )
    return f"this Ollama model has no `vision` capability ({model})"
