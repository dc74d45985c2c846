"""The offline RAG triad judge: context relevance, groundedness and answer relevance without an LLM.

Groundedness splits the answer into sentence-level claims and looks for each claim's best support
among the context sentences (and adjacent pairs of them), scoring support as a weighted sum of
embedding cosine (all-MiniLM-L6-v2) and lexical coverage (the share of the claim's content words
found in the passage). Three checks that embeddings are blind to veto support: a number in the
claim absent from the passage, a negation on one side only, and a capitalised name in the claim
found in no context. It is a fast screen, not an entailment model; see docs/evals.md for its
measured accuracy and failure modes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keel.evals._metrics import embed

__all__ = ["JudgeScore", "OfflineJudge", "OfflineJudgeOptions", "split_claims"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATIONS = frozenset(
    """not no never none cannot nor neither without isn't doesn't didn't wasn't weren't aren't won't can't don't
    hasn't haven't""".split()
)
# Opposites that embeddings place close together; a claim using one where its passage uses the other is vetoed.
_ANTONYMS = (
    ("open", "closed"), ("higher", "lower"), ("more", "less"), ("increase", "decrease"), ("most", "least"),
    ("first", "last"), ("before", "after"), ("larger", "smaller"), ("largest", "smallest"), ("maximum", "minimum"),
    ("true", "false"), ("allowed", "forbidden"), ("accepted", "rejected"), ("enabled", "disabled"),
    ("always", "sometimes"), ("inside", "outside"), ("above", "below"), ("success", "failure"),
)  # fmt: skip
_OPPOSITE = dict(_ANTONYMS) | {b: a for a, b in _ANTONYMS}
_STOPWORDS = frozenset(
    """a an the and or but if then of to in on at by for with from as is are was were be been being it its this
    that these those there their they them he she his her we our you your i me my which who whom whose what when
    where why how do does did has have had so such than too very can could would should may might will shall also
    about into over under after before during between through up down out off again further once all any both each
    few more most other some only own same just""".split()
)


@dataclass(frozen=True, slots=True)
class JudgeScore:
    """One judge's score (0–1) for one case and metric, with what produced it.

    `details` holds the evidence: per-claim support for the offline judge; the model, prompt,
    sampling settings, raw reply and attempts for an LLM judge.
    """

    metric: str
    score: float
    judge: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"metric": self.metric, "score": self.score, "judge": self.judge, "details": self.details}


@dataclass(frozen=True, slots=True)
class OfflineJudgeOptions:
    """Weights and thresholds of the offline judge (defaults chosen on tests/data/evals/groundedness.jsonl)."""

    embedding_weight: float = 0.5
    support_threshold: float = 0.62
    check_numbers: bool = True
    check_negation: bool = True
    check_names: bool = True


def split_claims(text: str) -> list[str]:
    """Split text into sentence-level claims (on `.`, `!`, `?` followed by a capital or digit).

    Examples:
        >>> split_claims("Paris is the capital. It has 2.1 million people! Nice?")
        ['Paris is the capital.', 'It has 2.1 million people!', 'Nice?']
    """
    return [part.strip() for part in _SENTENCE.split(text.strip()) if part.strip()]


def _stem(word: str) -> str:
    word = word.lower().strip("'")
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _content(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text) if w.lower() not in _STOPWORDS and w.lower() not in _NEGATIONS}


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def _negated(text: str) -> bool:
    words = {w.lower() for w in _WORD.findall(text)}
    return bool(words & _NEGATIONS) or "n't" in text.lower()


def _names(text: str) -> set[str]:
    # Capitalised words not at the start of a sentence: names, places, products.
    found: set[str] = set()
    for sentence in split_claims(text):
        words = _WORD.findall(sentence)
        found.update(_name(w) for w in words[1:] if w[0].isupper() and w.lower() not in _STOPWORDS)
    return found


def _name(word: str) -> str:
    word = word.lower()
    return word[:-2] if word.endswith("'s") else word


def _opposed(claim: str, passage: str) -> bool:
    claim_words = {w.lower() for w in _WORD.findall(claim)}
    passage_words = {w.lower() for w in _WORD.findall(passage)}
    return any(_OPPOSITE.get(w) in passage_words and w not in passage_words for w in claim_words)


def _coverage(claim: set[str], passage: set[str]) -> float:
    return len(claim & passage) / len(claim) if claim else 1.0


class OfflineJudge:
    """Scores the RAG triad with sentence embeddings and word overlap; deterministic, no network.

    Examples:
        >>> judge = OfflineJudge()  # doctest: +SKIP
        >>> judge.groundedness("Paris is in France.", ["Paris is the capital of France."]).score  # doctest: +SKIP
        1.0
    """

    name = "offline"

    def __init__(self, options: OfflineJudgeOptions | None = None, *, cache_size: int = 10_000) -> None:
        self.options = options or OfflineJudgeOptions()
        # Cases of one suite share contexts; each distinct text is embedded once per judge.
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, embed(missing), strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)

    def close(self) -> None:
        """Nothing to release; here so every judge can be closed alike."""

    def prefetch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Sequence[str]],
        metrics: Collection[str] = ("groundedness", "context_relevance", "answer_relevance"),
    ) -> None:
        """Embed, in batches, every text the given metrics will need for these cases.

        Batching is ~3.5x faster than embedding case by case (137 sentences: 4.1 s against 14.3 s
        on one busy CPU thread); scores are the same.
        """
        texts: list[str] = []
        if "groundedness" in metrics:
            texts += [claim for answer in answers for claim in split_claims(answer)]
            texts += [p for case_contexts in contexts for p in self._passages(case_contexts)]
        if "answer_relevance" in metrics:
            texts += [*questions, *answers]
        if "context_relevance" in metrics:
            texts += questions
            texts += [s for case_contexts in contexts for c in case_contexts for s in split_claims(c) or [c]]
        self._embed(texts)

    def groundedness(self, answer: str, contexts: Sequence[str]) -> JudgeScore:
        """The share of the answer's claims supported by the contexts (1.0 for an empty answer).

        Args:
            answer: The generated answer.
            contexts: The retrieved passages it should rest on.

        Returns:
            The score, with each claim's best supporting passage, support score and verdict.
        """
        claims = split_claims(answer)
        passages = self._passages(contexts)
        if not claims:
            return JudgeScore("groundedness", 1.0, self.name, {"claims": []})
        if not passages:
            details = [{"claim": c, "supported": False, "support": 0.0, "passage": None} for c in claims]
            return JudgeScore("groundedness", 0.0, self.name, {"claims": details})
        vectors = self._embed([*claims, *passages])
        cosine = vectors[: len(claims)] @ vectors[len(claims) :].T
        all_context = " ".join(contexts)
        known_names = _names(all_context) | {_name(w) for w in _WORD.findall(all_context)}
        verdicts = [self._support(claim, passages, cosine[i], known_names) for i, claim in enumerate(claims)]
        score = sum(v["supported"] for v in verdicts) / len(verdicts)
        return JudgeScore("groundedness", score, self.name, {"claims": verdicts})

    def _passages(self, contexts: Sequence[str]) -> list[str]:
        passages: list[str] = []
        for context in contexts:
            sentences = split_claims(context)
            passages.extend(sentences)
            # A claim may merge two adjacent sentences of the source.
            passages.extend(f"{a} {b}" for a, b in zip(sentences, sentences[1:], strict=False))
        return passages

    def _support(self, claim: str, passages: list[str], cosine: np.ndarray, known_names: set[str]) -> dict[str, Any]:
        opts = self.options
        words = _content(claim)
        combined = [
            opts.embedding_weight * float(cosine[j]) + (1 - opts.embedding_weight) * _coverage(words, _content(p))
            for j, p in enumerate(passages)
        ]
        name_veto = opts.check_names and not _names(claim) <= known_names
        # The claim is supported by the best passage that clears the threshold with no veto; if none
        # does, the best-scoring passage and its vetoes are reported.
        order = sorted(range(len(passages)), key=lambda j: -combined[j])
        chosen, chosen_vetoes = order[0], self._vetoes(claim, passages[order[0]], name_veto)
        for j in order:
            if combined[j] < opts.support_threshold:
                break
            vetoes = self._vetoes(claim, passages[j], name_veto)
            if not vetoes:
                chosen, chosen_vetoes = j, vetoes
                break
        supported = combined[chosen] >= opts.support_threshold and not chosen_vetoes
        return {
            "claim": claim,
            "supported": supported,
            "support": round(combined[chosen], 4),
            "passage": passages[chosen],
            "vetoes": chosen_vetoes,
        }

    def _vetoes(self, claim: str, passage: str, name_veto: bool) -> list[str]:
        opts = self.options
        vetoes = []
        if opts.check_numbers and not _numbers(claim) <= _numbers(passage):
            vetoes.append("number not in passage")
        if opts.check_negation and _negated(claim) != _negated(passage):
            vetoes.append("negation differs")
        if opts.check_negation and _opposed(claim, passage):
            vetoes.append("opposite word")
        if name_veto:
            vetoes.append("name not in contexts")
        return vetoes

    def context_relevance(self, question: str, contexts: Sequence[str]) -> JudgeScore:
        """Mean relevance of each context to the question: cosine of its best sentence, clipped to 0–1."""
        if not contexts:
            return JudgeScore("context_relevance", 0.0, self.name, {"contexts": []})
        per_context: list[float] = []
        for context in contexts:
            sentences = split_claims(context) or [context]
            vectors = self._embed([question, *sentences])
            per_context.append(max(0.0, float(np.max(vectors[1:] @ vectors[0]))))
        score = float(np.mean(per_context))
        return JudgeScore("context_relevance", score, self.name, {"contexts": [round(s, 4) for s in per_context]})

    def answer_relevance(self, question: str, answer: str) -> JudgeScore:
        """How directly the answer addresses the question: embedding cosine, clipped to 0–1."""
        if not answer.strip():
            return JudgeScore("answer_relevance", 0.0, self.name, {})
        vectors = self._embed([question, answer])
        return JudgeScore("answer_relevance", max(0.0, float(vectors[0] @ vectors[1])), self.name, {})
