"""A synthetic web-like corpus with known near-duplicate clusters, for deduplication benchmarks.

Documents are paragraphs of sentences drawn from a Zipf-distributed vocabulary of pronounceable
pseudo-words mixed with per-topic words and a little shared boilerplate, so unrelated documents share
few 5-grams. A fraction are copies of earlier documents: exact, or with 2-10% of their words replaced,
deleted or inserted in short spans. Each copy records its original and its true word-5-gram Jaccard.
Everything follows from the seed; nothing is downloaded.

    from _corpus import make_corpus
    corpus = make_corpus(2000, dup_fraction=0.3, seed=0)
    corpus.write_jsonl("corpus_dir", shards=2)
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FUNCTION_WORDS = (
    "the of and to a in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will can more other its who "
    "what some than them these may into only could new also two any time very after our most made first"
).split()
BOILERPLATE = (
    "all rights reserved",
    "click here to read more",
    "sign up for our newsletter to get the latest updates",
    "terms of use and privacy policy",
    "share this article on social media",
    "this page was last updated on",
    "leave a comment below and let us know what you think",
    "related posts you may also like",
)
WORD = re.compile(r"\w+")


@dataclass(slots=True)
class Corpus:
    """Documents in corpus order; for each copy its `(original_id, true 5-gram Jaccard)`; quoting documents.

    `related` documents are originals that reuse 20-60% of an earlier document's paragraphs (same site,
    quoted passages): they share many 5-grams with it but are not copies, so removing one costs precision.
    """

    docs: list[tuple[str, str]]
    truth: dict[str, tuple[str, float]]
    related: dict[str, tuple[str, float]] = field(default_factory=dict)  # hard negatives: quote a source, not copies

    @property
    def nbytes(self) -> int:
        return sum(len(text.encode()) for _, text in self.docs)

    def write_jsonl(self, directory: str | Path, shards: int = 1) -> list[Path]:
        """Write `{"id", "text"}` lines into `shards` files of consecutive documents; returns their paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        bounds = np.linspace(0, len(self.docs), shards + 1).astype(int)
        paths = []
        for s in range(shards):
            path = out / f"shard-{s:05d}.jsonl"
            with path.open("w", encoding="utf-8") as f:
                for doc_id, text in self.docs[bounds[s] : bounds[s + 1]]:
                    f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
            paths.append(path)
        return paths


def word_shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams, punctuation dropped: the reference both tools' shingling approximates."""
    words = WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = word_shingles(a, n), word_shingles(b, n)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def _vocabulary(seed: int, size: int) -> list[str]:
    pick = random.Random(seed)
    onsets = "b c d f g h j k l m n p r s t v w z br ch cl cr dr fl gr pl pr sh st th tr".split()
    vowels = "a e i o u a e i o u ai ea ee io ou".split()
    codas = ["", "", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "rk"]
    words: set[str] = set(FUNCTION_WORDS)
    out = list(FUNCTION_WORDS)
    while len(out) < size:
        syllables = pick.choices((1, 2, 3), (0.3, 0.5, 0.2))[0]
        w = "".join(pick.choice(onsets) + pick.choice(vowels) for _ in range(syllables)) + pick.choice(codas)
        if w not in words:
            words.add(w)
            out.append(w)
    return out


class _Writer:
    """Draws words and lays them out as sentences and paragraphs."""

    def __init__(self, rng: np.random.Generator, vocab_size: int = 40_000, topics: int = 60) -> None:
        self.rng = rng
        self.pick = random.Random(int(rng.integers(2**32)))
        self.vocab = np.array(_vocabulary(int(rng.integers(2**32)), vocab_size), dtype=object)
        ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
        self.cdf = np.cumsum(ranks**-1.05)
        self.cdf /= self.cdf[-1]
        self.topics = [
            rng.choice(np.arange(len(FUNCTION_WORDS), vocab_size), 400, replace=False) for _ in range(topics)
        ]

    def words(self, count: int, topic: int) -> list[str]:
        idx = np.searchsorted(self.cdf, self.rng.random(count))
        topical = self.rng.random(count) < 0.25
        idx[topical] = self.rng.choice(self.topics[topic], int(topical.sum()))
        return list(self.vocab[idx])

    def document(self, length: int) -> str:
        pick = self.pick
        words = self.words(length, pick.randrange(len(self.topics)))
        for j in np.flatnonzero(self.rng.random(length) < 0.07):
            words[j] += ","
        paragraphs, sentences, i = [], [], 0
        while i < len(words):
            n = pick.randint(6, 28)
            sentence = words[i : i + n]
            sentence[-1] = sentence[-1].rstrip(",") + pick.choice(".?!.")
            sentences.append(" ".join([sentence[0].capitalize(), *sentence[1:]]))
            i += n
            if len(sentences) >= pick.randint(3, 8) or i >= len(words):
                paragraphs.append(" ".join(sentences))
                sentences = []
        if pick.random() < 0.3:
            paragraphs.append(pick.choice(BOILERPLATE).capitalize() + ".")
        return "\n\n".join(paragraphs)

    def edit(self, text: str, rate: float) -> str:
        """Replace, delete or insert words in short spans until about `rate` of the words were touched."""
        tokens = text.split(" ")
        budget = max(1, round(rate * len(tokens)))
        while budget > 0:
            span = min(budget, int(self.rng.geometric(1 / 3)))
            at = int(self.rng.integers(0, max(1, len(tokens) - span)))
            op = self.rng.integers(3)
            if op == 0:
                tokens[at : at + span] = self.words(span, int(self.rng.integers(len(self.topics))))
            elif op == 1:
                del tokens[at : at + span]
            else:
                tokens[at:at] = self.words(span, int(self.rng.integers(len(self.topics))))
            budget -= span
        return " ".join(tokens)


def _quote(writer: _Writer, source: str, share: float, length: int) -> str:
    """A new document that reuses about `share` of `source`'s paragraphs among at least as many fresh words."""
    paragraphs = source.split("\n\n")
    kept = [p for p in paragraphs if writer.pick.random() < share] or paragraphs[:1]
    fresh = writer.document(max(length, sum(p.count(" ") + 1 for p in kept))).split("\n\n")
    mixed = kept + fresh
    writer.pick.shuffle(mixed)
    return "\n\n".join(mixed)


def make_corpus(n_docs: int, dup_fraction: float = 0.3, seed: int = 0, related_fraction: float = 0.05) -> Corpus:
    """`n_docs` documents of 100-3000 words (log-uniform), of which `dup_fraction` are copies of earlier ones.

    A quarter of the copies are exact; the rest have 2-10% of their words edited. Some originals are
    copied many times (heavy-tailed), most once. Copies sit at random positions after their original, and
    ids are `doc-0000000` in corpus order, so "keep the first / smallest id" keeps originals. A further
    `related_fraction` of the originals quote an earlier original (see `Corpus`).
    """
    rng = np.random.default_rng(seed)
    writer = _Writer(rng)
    n_copies = round(n_docs * dup_fraction)
    n_orig = n_docs - n_copies
    lengths = np.exp(rng.uniform(np.log(100), np.log(3000), n_orig)).astype(int)
    originals = [writer.document(int(n)) for n in lengths]
    position = rng.random(n_orig)
    quoted: dict[int, int] = {}
    for q in rng.choice(n_orig, round(n_orig * related_fraction), replace=False):
        src = int(rng.integers(n_orig))
        if src != q and src not in quoted:
            originals[q] = _quote(writer, originals[src], float(rng.uniform(0.2, 0.6)), int(lengths[q]))
            position[q] = max(position[q], position[src] + 1e-9)
            quoted[int(q)] = src
    popularity = rng.pareto(1.5, n_orig) + 1.0
    sources = rng.choice(n_orig, n_copies, p=popularity / popularity.sum())
    entries: list[tuple[float, str, int]] = [(float(position[i]), text, -1) for i, text in enumerate(originals)]
    for src in sources:
        exact = rng.random() < 0.25
        text = originals[src] if exact else writer.edit(originals[src], float(rng.uniform(0.02, 0.10)))
        entries.append((float(position[src] + (1 - position[src]) * rng.random()), text, int(src)))
    order = sorted(range(len(entries)), key=lambda e: entries[e][0])
    ids = {e: f"doc-{rank:07d}" for rank, e in enumerate(order)}
    docs = [(ids[e], entries[e][1]) for e in order]
    truth = {
        ids[e]: (ids[src], 1.0 if entries[e][1] == originals[src] else jaccard(entries[e][1], originals[src]))
        for e in order
        if (src := entries[e][2]) >= 0
    }
    related = {ids[q]: (ids[src], jaccard(originals[q], originals[src])) for q, src in quoted.items()}
    return Corpus(docs, truth, related)
