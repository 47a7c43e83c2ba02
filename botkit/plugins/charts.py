"""Pictures for the explain commands, drawn with matplotlib's Agg backend (no display needed).

Only matplotlib's object API is used (Figure + FigureCanvasAgg), never pyplot's global state,
so charts can be drawn from several chats at once.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CONTEXT_SIZE", "PROBS_SIZE", "context_chart", "probs_chart", "token_label"]

PROBS_SIZE = (1000, 500)  # pixels
CONTEXT_SIZE = (1000, 220)
_DPI = 100


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # attaches an Agg canvas; savefig then needs no display
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def token_label(piece: str) -> str:
    """A token as a reader can see it: spaces as ␣, newlines and tabs escaped."""
    shown = piece.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t")
    return shown or "∅"


def probs_chart(
    labels: Sequence[str], raw: Sequence[float], final: Sequence[float], settings: str
) -> bytes:
    """Two panels of horizontal bars: the raw probabilities and those after the settings."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(PROBS_SIZE[0] / _DPI, PROBS_SIZE[1] / _DPI), dpi=_DPI)
    left, right = figure.subplots(1, 2, sharey=True)
    positions = list(range(len(labels)))[::-1]
    for axis, values, title, colour in (
        (left, raw, "raw (temperature 1, nothing cut)", "#8c8c8c"),
        (right, final, f"after {settings}", "#2a7ab0"),
    ):
        bars = axis.barh(positions, [v * 100 for v in values], color=colour)
        axis.set_title(title, fontsize=10)
        axis.set_xlim(0, 100)
        axis.set_xlabel("probability (%)")
        for bar, value in zip(bars, values, strict=True):
            axis.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2,
                      f"{value * 100:.1f}%", va="center", fontsize=8)  # fmt: skip
    left.set_yticks(positions, [token_label(label) for label in labels], fontsize=9)
    figure.suptitle("Next-token probabilities: the 10 likeliest tokens", fontsize=11)
    figure.tight_layout()
    return _png(figure)


def context_chart(parts: Sequence[tuple[str, int]], window: int, dropped: int) -> bytes:
    """One bar: the context window split into its parts (persona, examples, history, memory,
    documents, tools, reply framing, reserve, free), in that order."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(CONTEXT_SIZE[0] / _DPI, CONTEXT_SIZE[1] / _DPI), dpi=_DPI)
    axis = figure.subplots()
    colours = [
        "#7b4fa0", "#b07ac8", "#2a7ab0", "#3aa08a", "#8fd1b5", "#c0504d", "#9bbfd9", "#e0a030",
        "#dddddd",
    ]  # fmt: skip
    start = 0
    for (label, tokens), colour in zip(parts, colours, strict=False):
        axis.barh([0], [tokens], left=start, color=colour, label=f"{label}: {tokens}")
        start += tokens
    axis.set_xlim(0, window)
    axis.set_yticks([])
    note = f"; {dropped} older messages no longer seen" if dropped else ""
    axis.set_title(f"Context window: {window} tokens{note}", fontsize=10)
    axis.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=(len(parts) + 1) // 2, fontsize=8
    )
    figure.tight_layout()
    return _png(figure)
