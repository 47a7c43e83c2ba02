"""13. Which ranking finds what a question is about: keywords, vectors, or both fused.

A chat of 600 stored messages on everyday topics, with 20 facts planted among them; each fact
is asked about twice, once in words it shares with the fact ("What is the name of my dog?")
and once paraphrased ("How is my pup called?"). Every ranking searches the same store with the
default embedder (all-MiniLM-L6-v2 in-process), and a question counts as found when its fact
is among the first 5 results (hit@5): keyword search alone (the database's full-text index),
vector search alone (exact cosine), reciprocal rank fusion of both (what botkit uses), and a
weighted sum of normalised scores (the usual alternative to RRF).
"""

from __future__ import annotations

from bench.common import Result, incoming, started_bot
from botkit.backends.base import Role
from botkit.retrieval.fusion import fuse
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage

# (fact, a question in its words, a paraphrase)
FACTS = [
    ("My dog's name is Biscuit.", "What is the name of my dog?", "How is my pup called?"),
    ("I was born in Lisbon in 1990.", "Where was I born?", "Which city do I come from?"),
    ("My sister Ana works as a nurse.", "What does Ana work as?", "What's my sibling's job?"),
    ("The wifi password is tangerine42.", "What is the wifi password?",
     "How do I get on the wireless network?"),
    ("I am allergic to peanuts.", "What am I allergic to?", "Which food makes me sick?"),
    ("My car is a blue Fiat Panda.", "What car do I drive?", "Which vehicle do I own?"),
    ("Our meeting with Tom is on Friday at ten.", "When is the meeting with Tom?",
     "What day do I see Tom?"),
    ("My favourite film is Spirited Away.", "What is my favourite film?",
     "Which movie do I like most?"),
    ("I keep the spare key under the blue flowerpot.", "Where is the spare key?",
     "Where did I hide the extra key to the house?"),
    ("My boss is called Ingrid Larsen.", "What is my boss called?", "Who is my manager?"),
    ("I run 5 kilometres every Tuesday.", "How far do I run on Tuesdays?",
     "What is my weekly jogging distance?"),
    ("The plumber's number is 555 0192.", "What is the plumber's number?",
     "How can I call the person who fixes pipes?"),
    ("My daughter plays the cello.", "What instrument does my daughter play?",
     "Which music does my girl make?"),
    ("I am learning Japanese on Duolingo.", "Which language am I learning?",
     "What am I studying on my phone?"),
    ("My blood type is O negative.", "What is my blood type?", "Which blood group do I have?"),
    ("We moved to Utrecht last spring.", "Where did we move last spring?",
     "What city do we live in now?"),
    ("The cat needs her pills at 8 pm.", "When does the cat need her pills?",
     "At what time is the kitty's medicine?"),
    ("My shoe size is 43.", "What is my shoe size?", "How big are my feet?"),
    ("I planted tomatoes and basil in May.", "What did I plant in May?",
     "Which vegetables are in my garden?"),
    ("Grandma's birthday is on the 3rd of July.", "When is Grandma's birthday?",
     "What date do we celebrate my grandmother?"),
]  # fmt: skip
FILLER = [
    "The weather was grey and wet all week.", "We talked about trains and timetables.",
    "Someone asked for a soup recipe with lentils.", "The printer jammed again at work.",
    "I watched a documentary about whales.", "The bus was late this morning.",
    "We should buy more coffee beans.", "The football match ended in a draw.",
    "I read an article about solar panels.", "The neighbours are painting their fence.",
]  # fmt: skip
HIT_AT = 5


def _weighted(
    keyword: list[tuple[int, float]], vector: list[tuple[int, float]], weight: float = 0.5
) -> list[int]:
    """A convex sum of min-max normalised scores (keyword BM25, vector cosine)."""

    def normalised(ranking: list[tuple[int, float]]) -> dict[int, float]:
        if not ranking:
            return {}
        low, high = min(s for _, s in ranking), max(s for _, s in ranking)
        return {i: (s - low) / (high - low) if high > low else 1.0 for i, s in ranking}

    k, v = normalised(keyword), normalised(vector)
    scores = {i: weight * k.get(i, 0.0) + (1 - weight) * v.get(i, 0.0) for i in {*k, *v}}
    return sorted(scores, key=lambda i: (-scores[i], i))


async def run() -> list[Result]:
    """Hit@5 of each ranking, for questions in the fact's words and paraphrased."""
    async with started_bot(defaults={"memory": True}, retrieval={"vectors": True}) as bot:
        chat = await bot.repo.chat(incoming("", "fusion").chat)
        rows: list[NewMessage] = []
        for i in range(600):
            planted = i % 30 == 7 and i // 30 < len(FACTS)
            text = FACTS[i // 30][0] if planted else f"{FILLER[i % len(FILLER)]} ({i})"
            rows.append(NewMessage(Role.USER, None, text, 10, "bench", MessageStatus.COMPLETE))
        ids = await bot.repo.add_messages(chat.id, rows)
        fact_ids = {rows[i].content: ids[i] for i in range(len(rows))}
        indexer, vectors = bot.retrieval.indexer, bot.retrieval.vectors
        embedder = bot.retrieval.live_embedder
        assert indexer is not None
        assert vectors is not None
        assert embedder is not None
        await indexer.drain()
        chunk_of = {
            c.message_id: c.id
            for c in (await bot.repo.chunks.texts(range(1, len(rows) + 10))).values()
        }
        found: dict[str, dict[str, int]] = {"words": {}, "paraphrase": {}}
        for fact, *questions in FACTS:
            target = chunk_of[fact_ids[fact]]
            for kind, question in zip(("words", "paraphrase"), questions, strict=True):
                keyword = await bot.repo.chunks.keyword(chat.id, "memory", question, 20)
                query = await bot.retrieval.query_vector(question)
                near = await vectors.search(chat.id, "memory", embedder.name, query, 20)
                rankings = {
                    "keywords": [i for i, _ in keyword],
                    "vectors": [i for i, _ in near],
                    "rrf": [h.chunk_id for h in fuse(keyword, near)],
                    "weighted": _weighted(keyword, near),
                }
                for name, ranking in rankings.items():
                    hit = target in ranking[:HIT_AT]
                    found[kind][name] = found[kind].get(name, 0) + int(hit)
    results = []
    total = len(FACTS)
    for kind in ("words", "paraphrase"):
        rrf = found[kind]["rrf"]
        for name in ("keywords", "vectors", "weighted"):
            other = found[kind][name]
            ratio = rrf / other if other else float("inf")
            note = f"{rrf} and {other} of {total} facts among 600 messages"
            figure = f"hit@{HIT_AT}, {kind}: RRF vs {name}"
            results.append(
                Result(figure, rrf / total, other / total, "", ratio, "report", True, note)
            )
    return results
