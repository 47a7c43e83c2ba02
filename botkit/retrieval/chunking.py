"""Cutting a document's text into chunks of at most `size` tokens that overlap.

The text is split once into pieces (a word and the whitespace before it; a word longer than
a chunk is cut into parts) and each distinct piece is counted once, so a 2M-character document
costs about as many tokenizer calls as it has distinct words. A chunk ends at the strongest
boundary it can reach (paragraph > sentence > line > word > inside a word), preferring one
past half its size; the next one starts far enough back to repeat about `overlap` tokens,
at a sentence start where one is near. A piece's count is an estimate of its share of a
chunk (tokenizers merge across spaces), so every chunk is counted whole before it is kept and
made shorter if it is over `size`.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate

__all__ = ["Chunk", "chunk_text"]

CountTokens = Callable[[str], int]

# Boundary after a piece: the higher, the better a place to end a chunk.
_HARD, _WORD, _LINE, _SENTENCE, _PARAGRAPH = range(5)
_PIECE = re.compile(r"\s*\S+")
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of the text: text == source[start:end], stripped; tokens by the counter."""

    text: str
    start: int
    end: int
    tokens: int
    page: int | None = None


def chunk_text(
    text: str,
    count_tokens: CountTokens,
    size: int,
    overlap: int,
    page_starts: Sequence[int] = (),
) -> list[Chunk]:
    """Chunks of at most size tokens covering every non-space character of text, in order;
    page_starts (where each page begins, as in a Document) gives each chunk its page."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size (size={size}, overlap={overlap})")
    base = count_tokens("")  # what every call adds, e.g. a BOS token
    if base >= size:
        raise ValueError(f"size {size} leaves no room: the counter gives '' {base} tokens")
    pieces = _pieces(text, count_tokens, size, base)
    if not pieces:
        return []
    ends = [end for _, end, _, _ in pieces]
    levels = [level for _, _, level, _ in pieces]
    sums = [0, *accumulate(tokens for _, _, _, tokens in pieces)]
    chunks: list[Chunk] = []
    first = previous = 0  # previous: where the chunk before ended (a piece index)
    while first < len(pieces):
        # Each chunk ends past the one before (else it would repeat part of it and add
        # nothing): pieces first..last-1 fit by their summed counts; at least one new piece.
        floor = max(first + 1, previous + 1)
        last = max(floor, bisect_right(sums, sums[first] + size - base) - 1)
        while True:
            stop = _best_end(first, last, levels, sums, size - base, floor)
            start, end = pieces[first][0], ends[stop - 1]
            body = text[start:end].rstrip()
            tokens = count_tokens(body)
            if tokens <= size or stop == floor:
                break
            last = stop - 1  # the estimate was short: end earlier
        if tokens > size and first < previous:
            first = previous  # the overlap leaves no room for a new piece: start without it
            continue
        chunks.append(_chunk(body, start, tokens, page_starts))
        if stop == len(pieces):
            break
        previous = stop
        first = _next_start(first, stop, levels, sums, overlap)
    return chunks


def _pieces(
    text: str, count_tokens: CountTokens, size: int, base: int
) -> list[tuple[int, int, int, int]]:
    """(start, end, boundary level after it, tokens) of each piece, tokens without `base`.

    A piece is counted with the whitespace before it (" word"), as BPE and SentencePiece
    vocabularies hold words, so the sum of the pieces is close to the count of the whole.
    """
    counted: dict[str, int] = {}

    def count(piece: str) -> int:
        if piece not in counted:
            counted[piece] = count_tokens(piece) - base
        return counted[piece]

    out: list[tuple[int, int, int, int]] = []
    previous = ""
    for match in _PIECE.finditer(text):
        piece = match.group()
        word = piece.lstrip()
        space = piece[: len(piece) - len(word)]
        if out:  # the boundary between the previous word and this one
            out[-1] = (*out[-1][:2], _level(previous, space), out[-1][3])
        previous = word
        start = match.start() + len(space)
        if count(piece) + base <= size:
            out.append((start, match.end(), _PARAGRAPH, count(piece)))
            continue
        # Longer than a chunk (a base64 blob, a URL): the word cut into parts that fit.
        for part_start, part_end in _cut(start, match.end(), text, count_tokens, size):
            out.append((part_start, part_end, _HARD, count(text[part_start:part_end])))
    if out:
        out[-1] = (*out[-1][:2], _PARAGRAPH, out[-1][3])
    return out


def _level(word: str, space: str) -> int:
    """How good a place to end a chunk the space after word is."""
    if space.count("\n") > 1:
        return _PARAGRAPH
    if _SENTENCE_END.search(word):
        return _SENTENCE
    return _LINE if "\n" in space else _WORD


def _cut(
    start: int, end: int, text: str, count_tokens: CountTokens, size: int
) -> list[tuple[int, int]]:
    """start..end in consecutive parts of at most size tokens each, halving until they fit."""
    step = max(1, size)
    parts: list[tuple[int, int]] = []
    todo = [(s, min(s + step, end)) for s in range(start, end, step)]
    todo.reverse()
    while todo:
        s, e = todo.pop()
        if e - s > 1 and count_tokens(text[s:e]) > size:
            middle = (s + e) // 2
            todo.extend([(middle, e), (s, middle)])
        else:
            parts.append((s, e))
    return parts


def _best_end(
    first: int, last: int, levels: list[int], sums: list[int], room: int, floor: int
) -> int:
    """Where to end a chunk that starts at piece first and may reach piece last (exclusive),
    at floor or later: the strongest boundary past half the room (else anywhere), the latest
    among equals."""
    if last == len(levels):
        return last
    best, best_key = last, (False, -1)
    for stop in range(floor, last + 1):
        key = (sums[stop] - sums[first] >= room // 2, levels[stop - 1])
        if key >= best_key:
            best, best_key = stop, key
    return best


def _next_start(first: int, stop: int, levels: list[int], sums: list[int], overlap: int) -> int:
    """The next chunk's first piece: far enough back from stop to repeat at most overlap
    tokens, at the strongest boundary among those repeating at least half of it."""
    if overlap == 0:
        return stop
    earliest = max(first + 1, bisect_left(sums, sums[stop] - overlap, first + 1, stop + 1))
    if earliest >= stop:
        return stop
    best, best_key = stop, (False, -1)
    for start in range(earliest, stop):
        key = (sums[stop] - sums[start] >= overlap // 2, levels[start - 1])
        if key > best_key:
            best, best_key = start, key
    return best


def _chunk(body: str, start: int, tokens: int, page_starts: Sequence[int]) -> Chunk:
    page = max(1, bisect_right(page_starts, start)) if page_starts else None
    return Chunk(body, start, start + len(body), tokens, page)
