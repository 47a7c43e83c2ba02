"""The splitter and the paced reply stream."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.adapters.memory import MemoryTarget
from botkit.core.streaming import ReplyStream, split_message

words = st.text(alphabet=st.sampled_from("abcdefgh xyz\n"), min_size=0, max_size=3000)


@given(text=words, limit=st.integers(min_value=32, max_value=500))
def test_pieces_fit_and_join_back_to_the_text(text: str, limit: int) -> None:
    pieces = split_message(text, limit)
    assert all(len(p) <= limit for p in pieces)
    assert "".join(pieces) == text


@given(
    blocks=st.lists(
        st.tuples(st.booleans(), st.text(alphabet="abc def\n", min_size=1, max_size=400)),
        min_size=1,
        max_size=6,
    ),
    limit=st.integers(min_value=40, max_value=300),
)
@settings(max_examples=200)
def test_code_fences_are_balanced_in_every_piece(
    blocks: list[tuple[bool, str]], limit: int
) -> None:
    text = "".join(f"```py\n{body}\n```\n" if code else f"{body}\n" for code, body in blocks)
    pieces = split_message(text, limit)
    assert all(len(p) <= limit for p in pieces)
    for piece in pieces:
        fences = [line for line in piece.split("\n") if line.lstrip().startswith("```")]
        assert len(fences) % 2 == 0, piece
    # Only fence lines were added: removing them from both sides gives the same words.
    assert _words("".join(pieces)) == _words(text)


def _words(text: str) -> list[str]:
    return text.replace("```py", "").replace("```", "").split()


def test_words_are_not_broken_when_a_space_is_near() -> None:
    text = ("word " * 200).strip()
    pieces = split_message(text, 64)
    assert all(not p.startswith("ord") for p in pieces)
    assert all(p.endswith(" ") or p == pieces[-1] for p in pieces)


async def test_edits_are_paced_by_the_targets_interval() -> None:
    now = [0.0]
    target = MemoryTarget(max_length=50, min_edit_interval=1.0)
    stream = ReplyStream(target, clock=lambda: now[0])
    for i in range(10):
        now[0] = i * 0.25
        await stream.append("tok ")
    # First chunk sent at t=0, then at most one edit per second: t=1.0, t=2.0.
    assert target.edits == 2
    await stream.finish()
    assert target.text == ("tok " * 10)


async def test_long_reply_is_split_into_several_messages() -> None:
    target = MemoryTarget(max_length=40)
    stream = ReplyStream(target)
    text = "lorem ipsum dolor sit amet " * 10
    for word in text.split(" "):
        await stream.append(word + " ")
    await stream.finish()
    assert len(target.messages) > 1
    assert all(len(m) <= 40 for m in target.messages)
    assert "".join(target.messages).split() == text.split()
