"""chunk_text: sizes by the given counter, boundaries, overlap, coverage, and its cost."""

from __future__ import annotations

import itertools
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.retrieval.chunking import Chunk, chunk_text


def chars(text: str) -> int:
    """One token a character: exact and additive, so overlaps can be checked exactly."""
    return len(text)


def words_with_bos(text: str) -> int:
    """A BOS token plus one a word and one for each 4 characters of a long word."""
    return 1 + sum(1 + len(word) // 4 for word in text.split())


texts = st.text(
    alphabet=st.sampled_from([*list("abcdef ghij.!?\n\n\t"), "é", "語", "🙂", "\xa0"]),
    max_size=1500,
)


def covered(text: str, chunks: list[Chunk]) -> set[int]:
    return {i for c in chunks for i in range(c.start, c.end)}


@given(text=texts, size=st.integers(2, 120), data=st.data())
@settings(max_examples=300, deadline=None)
def test_chunks_fit_cover_the_text_in_order_and_overlap(
    text: str, size: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    for count in (chars, words_with_bos):
        if count is words_with_bos and size < 3:
            continue  # BOS plus one character's worth does not fit in 2
        chunks = chunk_text(text, count, size, overlap)
        assert chunks == chunk_text(text, count, size, overlap)  # deterministic
        for c in chunks:
            assert c.text
            assert c.text == text[c.start : c.end] == c.text.strip()
            assert c.tokens == count(c.text) <= size
        assert [c.start for c in chunks] == sorted({c.start for c in chunks})
        assert [c.end for c in chunks] == sorted({c.end for c in chunks})
        # Every character that is not whitespace is in some chunk.
        visible = {i for i, ch in enumerate(text) if not ch.isspace()}
        assert visible <= covered(text, chunks)
        if count is chars:
            for before, after in itertools.pairwise(chunks):
                assert max(0, before.end - after.start) <= overlap


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    paragraphs = [f"Paragraph {n} has a few words in it. And a second sentence." for n in range(6)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, chars, size=130, overlap=0)
    # Two paragraphs (122 characters with the break) fit in 130; never a cut mid-paragraph.
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[i : i + 2]) for i in (0, 2, 4)]


def test_a_long_paragraph_breaks_at_a_sentence_then_at_a_word() -> None:
    sentence = "The cat sat on the mat. "
    chunks = chunk_text(sentence * 10, chars, size=60, overlap=0)
    assert all(c.text.endswith("mat.") for c in chunks)
    one_sentence = "word " * 40
    chunks = chunk_text(one_sentence, chars, size=33, overlap=0)
    assert all(re.fullmatch(r"(word ?)+", c.text) for c in chunks)
    assert all(c.text.endswith("word") for c in chunks)


def test_overlap_repeats_the_end_of_the_previous_chunk_from_a_sentence_start() -> None:
    text = " ".join(f"Sentence {n} ends here." for n in range(30))
    chunks = chunk_text(text, chars, size=100, overlap=30)
    for before, after in itertools.pairwise(chunks):
        repeated = text[after.start : before.end]
        assert 10 <= len(repeated) <= 30, repeated
        assert repeated.startswith("Sentence")


def test_a_word_longer_than_a_chunk_is_cut_hard() -> None:
    blob = "QUJD" * 500  # a base64 blob of 2000 characters
    text = f"Before the blob. {blob} After it."
    chunks = chunk_text(text, chars, size=64, overlap=8)
    assert all(c.tokens <= 64 for c in chunks)
    assert set(range(17, 17 + len(blob))) <= covered(text, chunks)
    assert sum(c.text == blob[c.start - 17 : c.end - 17] for c in chunks) >= 2000 // 64


def test_the_estimate_being_short_still_gives_chunks_within_size() -> None:
    # A counter that is not additive: a chunk costs more than its pieces (a penalty per space).
    def spaced(text: str) -> int:
        return len(text.split()) + text.count(" ") // 2

    text = "a b c d e f g h i j " * 50
    for c in chunk_text(text, spaced, size=10, overlap=3):
        assert spaced(c.text) <= 10


def test_pages_are_given_by_where_a_chunk_starts() -> None:
    pages = ["first page text. " * 5, "second page text. " * 5, "third. " * 5]
    text = "\n\n".join(pages)
    starts = [0, len(pages[0]) + 2, len(pages[0]) + len(pages[1]) + 4]
    chunks = chunk_text(text, chars, size=50, overlap=0, page_starts=starts)
    assert [c.page for c in chunks] == [1 + sum(c.start >= s for s in starts[1:]) for c in chunks]
    assert {c.page for c in chunks} == {1, 2, 3}
    assert chunk_text(text, chars, size=50, overlap=0)[0].page is None


def test_empty_and_whitespace_give_no_chunks() -> None:
    assert chunk_text("", chars, 10, 2) == []
    assert chunk_text(" \n\n\t ", chars, 10, 2) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("some text", chars, size, overlap)


def test_two_million_characters_are_cut_in_linear_time_with_few_counts() -> None:
    vocabulary = [f"w{i}ord" for i in range(5000)]
    words = [vocabulary[(i * 7919) % 5000] for i in range(330_000)]
    text = " ".join(
        " ".join(words[i : i + 12]) + (".\n\n" if i % 120 == 0 else ".")
        for i in range(0, 330_000, 12)
    )
    assert len(text) > 2_000_000
    calls = 0

    def counting(piece: str) -> int:
        nonlocal calls
        calls += 1
        return words_with_bos(piece)

    began = time.perf_counter()
    chunks = chunk_text(text, counting, size=256, overlap=32)
    elapsed = time.perf_counter() - began
    # Each distinct piece once, then each chunk once (plus the rare recount).
    assert calls < 3 * 5000 + 2 * len(chunks)
    assert elapsed < 10, elapsed
    assert all(c.tokens <= 256 for c in chunks)


def test_a_chunk_always_ends_past_the_one_before() -> None:
    # Found by the property test: moving back for the overlap left the next chunk no room to
    # get past the previous end, so it repeated part of that chunk and added nothing.
    for overlap in range(3):
        chunks = chunk_text("? ? a ?", chars, 3, overlap)
        ends = [c.end for c in chunks]
        assert ends == sorted(set(ends))
        assert ends[-1] == 7
