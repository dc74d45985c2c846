"""The offline `extractive` question writer: wh- and cloze questions whose answer is a span of the context.

It picks informative sentences (numbers with units, dates, names), turns one span of each into a question
in place ("It costs 289 dollars." → "The Summit Trail Tent costs how many dollars?", answer "289 dollars"), or
into a cloze ("Fill in the blank: …____…") when no wh-form reads well, and resolves a leading "It"/"They" to
the document's title so the question stands alone. The answer is the span exactly as the context has it, at a
recorded offset: answerable from its context by construction. It knows sentences and spans, not datasets.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from keel.evals._claims import split_sentences

__all__ = ["ExtractedQuestion", "document_title", "extract_questions", "key_terms", "split_chunks"]

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(rf"\b(?:(?:{_MONTHS})(?:\s+\d{{1,2}})?(?:,?\s+(?:19|20)\d\d)?|(?:19|20)\d\d)\b")
_NUMBER = re.compile(r"(?<![\w.-])(\d+(?:[.,]\d+)?%?)(?:\s+(?:to|and)\s+\d+(?:[.,]\d+)?)?(?=[\s.,;:!?)]|$)")
_NAME = re.compile(r"(?<![.!?]\s)\b([A-Z][a-zA-Z]+(?:\s+(?:of\s+)?[A-Z][a-zA-Z]+)*)")
_UNIT = re.compile(r"\s+((?:business\s+)?(?![A-Z])[^\W\d_]+)")
_NOT_UNITS = frozenset(
    "a an and are as at be by for from if in is it its of on or than that the to was were which with".split()
)
_PRONOUN = re.compile(r"^(It|They|This|These|He|She)\b\s+")
_STOP = frozenset(
    "about above after again against also because been before being below between both could every other "
    "their there these those through under until where which while whose would your with from into only "
    "over same such than that them then they this very what when will have does".split()
)
MIN_WORDS, MAX_WORDS = 6, 45  # sentences outside these bounds make poor questions


@dataclass(frozen=True, slots=True)
class ExtractedQuestion:
    """A question over one context, its answer span and where the span starts in the context."""

    question: str
    answer: str
    answer_start: int
    statement: str  # the sentence the question came from, pronoun resolved: the fact the answer asserts
    form: str  # "wh" or "cloze"


def document_title(text: str) -> str | None:
    """The first line when it reads as a title (short, no final period), else None."""
    first = text.strip().split("\n", 1)[0].strip().lstrip("#").strip()
    words = first.split()
    return first if 0 < len(words) <= 10 and not first.endswith((".", "?", "!", ":")) else None


def split_chunks(text: str, max_chars: int) -> list[str]:
    """The text as contexts of at most about `max_chars`: whole paragraphs, the title repeated on each."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    title = document_title(text)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if title and paragraphs and paragraphs[0].lstrip("#").strip() == title:
        paragraphs = paragraphs[1:]
    chunks, current = [], ""
    for paragraph in paragraphs:
        if current and len(current) + len(paragraph) + 2 > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return [f"{title}\n\n{c}" if title and title not in c else c for c in chunks]


def key_terms(text: str) -> set[str]:
    """Content words (5+ letters, not function words), lowercased: what two documents must share to be paired."""
    return {w for w in re.findall(r"[a-z]{5,}", text.lower()) if w not in _STOP}


def _resolve(sentence: str, title: str | None) -> str | None:
    """The sentence with a leading pronoun replaced by the title; None if it has one and there is no title."""
    match = _PRONOUN.match(sentence)
    if not match:
        return sentence
    if not title or match.group(1) not in ("It", "They"):
        return None
    subject = title if title.lower().startswith(("the ", "a ", "an ")) else f"The {title}"
    return subject + " " + sentence[match.end() :]


def _spans(sentence: str) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, wh-phrase) of answerable spans, best first: numbers with units, dates, names."""
    found: list[tuple[int, int, str, str]] = []
    for m in _NUMBER.finditer(sentence):
        if _DATE.fullmatch(m.group(0)) or _in_name(sentence, m.start(), m.end()):
            continue
        unit = _UNIT.match(sentence, m.end())
        if unit and unit.group(1).split()[-1] not in _NOT_UNITS:
            found.append((m.start(), unit.end(), "number", "how many"))
        else:
            found.append((m.start(), m.end(), "number", ""))
    for m in _DATE.finditer(sentence):
        found.append((m.start(), m.end(), "date", "when"))
    for m in _NAME.finditer(sentence):
        previous = sentence[: m.start()].split()[-1:]
        after_name = bool(previous) and (previous[0][:1].isupper() or previous[0][:1].isdigit())
        if m.start() > 0 and not after_name and not any(s <= m.start() < e for s, e, _, _ in found):
            found.append((m.start(), m.end(), "name", "what"))
    order = {"number": 0, "date": 1, "name": 2}
    return sorted(found, key=lambda s: (order[s[2]], not s[3], s[0]))


def _in_name(sentence: str, start: int, end: int) -> bool:
    """Whether a number sits between two capitalised words, as in "Ridge 40 Backpack" (part of a name)."""
    before, after = sentence[:start].split()[-1:], sentence[end:].split()[:1]
    return bool(before and after and before[0][:1].isupper() and after[0][:1].isupper())


def _question(sentence: str, start: int, end: int, kind: str, wh: str) -> tuple[str, str]:
    """The question for one span of a (resolved) sentence, and its form."""
    body = sentence.rstrip(" .!;:")
    if kind == "number" and wh and not body[end - 1 : end + 1].startswith("-"):
        number_end = _NUMBER.match(body, start)
        assert number_end is not None
        return f"{body[:start]}how many{body[number_end.end() :]}?", "wh"
    if kind == "date":
        before = body[:start].rstrip()
        if before.endswith((" in", " on", " since", " until", " by")):
            return f"{before.rsplit(' ', 1)[0]} when{body[end:]}?", "wh"
    if kind == "name" and start > 0 and body[end:].strip():
        return f"{body[:start]}what{body[end:]}?", "wh"
    return f"Fill in the blank: {body[:start]}____{body[end:]}.", "cloze"


def extract_questions(context: str, count: int, rng: random.Random) -> list[ExtractedQuestion]:
    """Up to `count` questions over `context`, one per sentence, most informative sentences first.

    Informative: more numbers, dates and names; ties broken by `rng`, so a seed picks among equals.
    """
    title = document_title(context)
    candidates = []
    sentences = [s for line in context.split("\n") if line.strip() for s in split_sentences(line)]
    for sentence in sentences:
        words = len(sentence.split())
        if not MIN_WORDS <= words <= MAX_WORDS or sentence.lstrip().startswith("#"):
            continue
        resolved = _resolve(sentence, title)
        spans = _spans(resolved) if resolved else []
        if resolved and spans:
            candidates.append((-len(spans), rng.random(), sentence, resolved, spans))
    candidates.sort(key=lambda c: (c[0], c[1]))
    out: list[ExtractedQuestion] = []
    for _, _, sentence, resolved, spans in candidates[:count]:
        start, end, kind, wh = spans[0]
        answer = resolved[start:end]
        offset = context.find(sentence)
        shift = len(resolved) - len(sentence)  # the pronoun's replacement moved every span right by this
        at = context.find(answer, offset + max(0, start - shift))
        if at < 0:
            continue
        question, form = _question(resolved, start, end, kind, wh)
        out.append(ExtractedQuestion(question, answer, at, resolved, form))
    return out
