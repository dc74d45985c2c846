"""Find what people write about people: names, street addresses, dates of birth and identity-document numbers.

Offline and model-free at run time: names come from a small logistic token classifier (weights in
`_data/people_model.json`, trained by `scripts/train_pii_people.py` on Faker-generated sentences) over lexicon
and context features (`_data/people_lexicon.json.gz`, built by `scripts/build_pii_lexicon.py`), kept only where
evidence beyond a capital letter says it is a name (`_name_evidence`: real text is full of capitalised terms,
headings and code names the classifier never saw in training); addresses, dates of birth and document numbers
from patterns that need a street type, a birth cue or a document cue next to the value. Returns `(type, start,
end)` triples; `_pii_detect` turns them into spans. Knows nothing of records.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["PEOPLE_TYPES", "PeopleFinder", "person_features"]

PEOPLE_TYPES = ("person", "address", "date_of_birth", "id_document")

# A word; an apostrophe joins only name parts (O'Brien, D'Angelo), never a contraction or possessive (it's, Anna's).
_WORD = re.compile(r"[^\W\d_]+(?:(?:-|['’](?!(?:s|t|re|ll|ve|d|m)\b))[^\W\d_]+)*")
# An inner capital marks an identifier (PyObject, MyClass), except in name prefixes (McDonald, DeShawn, LeBron).
_CAMEL = re.compile(r"^(?!(?:Mc|Mac|De|Di|Da|Du|La|Le|Van|Von|O['’]|D['’]))\w+[A-Z]")
CALENDAR = frozenset(
    "january february march april may june july august september october november december monday tuesday "
    "wednesday thursday friday saturday sunday".split()
)
TITLES = frozenset(
    "mr mrs ms miss mx dr prof sir madam dame lady lord herr frau monsieur madame mme mlle señor señora sr sra "
    "signor signora sig dhr mevr".split()
)
# Words that, within three words before a capitalised token, make a name more likely.
CUES = frozenset(
    "name named called contact customer client agent dear hi hello hey thanks thank regards sincerely signed "
    "by from with cc attn attention spoke asked told emailed called colleague manager engineer patient "
    "employee tenant applicant caller user author reviewer approver owner i'm iam is was met meet and "
    "cordialement grüße gruß saludos atentamente".split()
)
PARTICLES = frozenset("van von der den de del della di da dos das du la le bin al ter ten mac st".split())
# Capitalised words after which a capitalised token is a place, an organisation or a street, not a person.
ORG_NEXT = frozenset(
    "inc ltd llc gmbh ag corp corporation company co university college school hospital bank street st avenue "
    "ave road rd lane ln boulevard blvd drive way place square court foundation institute group team project "
    "library module package protocol api server service station airport river lake mountain park city county "
    "state kingdom republic".split()
)
FEATURES = (
    "bias", "first", "last", "common", "sentence_start", "prev_title", "cue_before", "prev_name_adjacent",
    "next_cap_adjacent", "next_last", "prev_first", "all_caps", "short", "possessive_after", "next_common_cap",
    "next_org", "after_the", "first_and_last", "first_and_common", "last_and_common", "prev_particle",
    "in_first_or_last", "unknown_word", "calendar", "next_name_unknown_adjacent", "prev_cap_unknown_adjacent",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Lexicon:
    first: frozenset[str]
    last: frozenset[str]
    common: frozenset[str]
    places: frozenset[str]
    place_words: frozenset[str]
    languages: frozenset[str]


@cache
def _lexicon() -> _Lexicon:
    raw = resources.files("keel.govern").joinpath("_data/people_lexicon.json.gz").read_bytes()
    data = json.loads(gzip.decompress(raw))
    return _Lexicon(
        *(frozenset(data[key]) for key in ("first", "last", "common", "places", "place_words", "languages"))
    )


@cache
def _model() -> tuple[tuple[float, ...], float]:
    data = json.loads(resources.files("keel.govern").joinpath("_data/people_model.json").read_text())
    if tuple(data["features"]) != FEATURES:
        raise RuntimeError("people_model.json was trained on other features; run scripts/train_pii_people.py")
    return tuple(float(w) for w in data["weights"]), float(data["threshold"])


def _is_cap(word: str) -> bool:
    return word[:1].isupper()


_CAPS_AFTER = re.compile(r" [A-Z]{2,}\b")
_CONTRACTION = re.compile(r"['’](?:t|re|ll|ve|d|m)\b")


def _candidate(text: str, token: re.Match[str], lexicon: _Lexicon) -> bool:
    """Could this word be part of a name? Capitalised prose, not code, an acronym or a contraction."""
    word = token.group()
    if not word[:1].isupper():
        return False
    if word.isupper() and len(word) > 1:
        # Acronyms and constants (GIL, NINO, TPFLAGS); a name in capitals comes as two words: JOHN SMITH.
        pair = _CAPS_AFTER.match(text, token.end()) or re.search(
            r"\b[A-Z]{2,} $", text[max(0, token.start() - 40) : token.start()]
        )
        if pair is None or (word.casefold() not in lexicon.first and word.casefold() not in lexicon.last):
            return False
    elif _CAMEL.match(word):
        return False  # an identifier: CPython, PyObject
    before = text[token.start() - 1 : token.start()]
    after = text[token.end() : token.end() + 1]
    if before in ("_", ".", "/", "@", "$", "<") or after in ("_", "(", "/", "=", "["):
        return False  # part of an identifier, a path, a call or markup (Py_DECREF, os.Path, Foo())
    return _CONTRACTION.match(text, token.end()) is None  # Don't, Won't, I'll


def person_features(text: str, tokens: list[re.Match[str]], i: int, lexicon: _Lexicon | None = None) -> list[float]:
    """The feature vector of token `i` (a capitalised word) of `text`, in the order of `FEATURES`."""
    lex = lexicon or _lexicon()
    word = tokens[i].group()
    folded = word.casefold()
    prev = tokens[i - 1] if i > 0 else None
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    gap_before = text[prev.end() : tokens[i].start()] if prev else ""
    gap_after = text[tokens[i].end() : nxt.start()] if nxt else ""
    prev_word = prev.group().casefold() if prev else ""
    after_title = prev_word in TITLES and gap_before in (". ", " ")
    sentence_start = prev is None or (not after_title and bool(re.search(r"[.!?:;\n\"“(]", gap_before)))
    adjacent_before = prev is not None and gap_before in (" ", "-")
    adjacent_after = nxt is not None and gap_after in (" ", "-")
    nxt_word = nxt.group() if nxt else ""
    before = [t.group().casefold() for t in tokens[max(0, i - 3) : i]]
    first, last, common = folded in lex.first, folded in lex.last, folded in lex.common
    return [
        1.0,
        float(first),
        float(last),
        float(common),
        float(sentence_start),
        float(prev_word.rstrip(".") in TITLES and not sentence_start),
        float(any(w in CUES for w in before)),
        float(adjacent_before and prev is not None and _is_cap(prev.group())
              and (prev_word in lex.first or prev_word in lex.last)),
        float(adjacent_after and _is_cap(nxt_word)),
        float(adjacent_after and _is_cap(nxt_word) and nxt_word.casefold() in lex.last),
        float(adjacent_before and prev is not None and _is_cap(prev.group()) and prev_word in lex.first),
        float(word.isupper() and len(word) > 1),
        float(len(word) <= 2),
        float(text[tokens[i].end() : tokens[i].end() + 2] in ("'s", "’s")),
        float(adjacent_after and _is_cap(nxt_word) and nxt_word.casefold() in lex.common
              and nxt_word.casefold() not in lex.last and nxt_word.casefold() not in lex.first),
        float(adjacent_after and nxt_word.casefold().rstrip(".") in ORG_NEXT),
        float(prev_word == "the" and adjacent_before),
        float(first and last),
        float(first and common),
        float(last and common),
        float(adjacent_before and prev_word in PARTICLES),
        float(first or last),
        float(not (first or last or common)),
        float(folded in CALENDAR),
        float(adjacent_after and _is_cap(nxt_word) and nxt_word.casefold() not in lex.common),
        float(adjacent_before and prev is not None and _is_cap(prev.group()) and prev_word not in lex.common
              and not sentence_start),
    ]  # fmt: skip


_CAPITALISED_RUN = re.compile(r"[^\W\d_][\w'’.-]*(?: [^\W\d_][\w'’.-]*)+")


def _in_place(text: str, start: int, end: int, places: frozenset[str]) -> bool:
    """Is text[start:end] part of a known multi-word place (Costa Rica, Saint Lucia, Rio de Janeiro)?"""
    lo = max(0, start - 40)
    window = text[lo : end + 40]
    for run in _CAPITALISED_RUN.finditer(window):
        if run.end() + lo <= start or run.start() + lo >= end:
            continue
        words = [(m.start() + run.start() + lo, m.end() + run.start() + lo) for m in re.finditer(r"\S+", run.group())]
        for size in (4, 3, 2):
            for i in range(len(words) - size + 1):
                s, e = words[i][0], words[i + size - 1][1]
                if s < end and start < e and text[s:e].rstrip(".,").casefold() in places:
                    return True
    return False


# Month and weekday abbreviations: "Jan" alone is a month in a table far more often than Jan de Vries.
_ABBREVIATED_DAYS = frozenset(
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur fri sat sun".split()
)
_TITLE_BEFORE = re.compile(rf"\b(?=[A-Z])(?i:{'|'.join(sorted(TITLES, key=len, reverse=True))})\.?[ \t]+$")
# A capital initial next to a word ("A. M. Kuchling", "Terry J. Reedy"): a name written the way authors sign.
_INITIAL_BEFORE = re.compile(r"(?:^|[\s(,-])[A-Z]\.[ \t]?(?:[A-Z]\.[ \t]?)*$")
_INITIAL_AFTER = re.compile(r"[ \t][A-Z]\.(?=\s|,|$)")
# Words that, right before a lone capitalised word that is also an English word, make it a name ("Thanks, Mark").
_STRONG_CUES = frozenset(
    "name named called contact dear hi hello hey thanks thank regards sincerely signed cc attn attention asked told "
    "emailed spoke ask tell email call ping colleague manager customer client agent patient mr mrs ms dr".split()
)


def _is_name(word: str, lexicon: _Lexicon) -> bool:
    """Is this word (or every part of a hyphenated one) a given name or a surname of the lexicon?"""
    parts = word.split("-")
    return all(part in lexicon.first or part in lexicon.last for part in parts if part)


def _name_evidence(text: str, start: int, end: int, lexicon: _Lexicon) -> bool:
    """Does the span the classifier took for a name carry evidence that it is one, beyond being capitalised?

    The classifier, trained on sentences where capitalised words are mostly names, takes any unknown capitalised
    word for one; real text is full of them (Unix, Traceback, Namespaces, Borland). A span stays a name when a
    title or initial stands by it, or when its words are names of the lexicon and not merely English words: a
    lone word that is both ("Mark", "Line", "Harry") needs a cue word right before it, and a lone name that the
    same text also writes in lower case ("emin") is a term, not a person.
    """
    words = [w.casefold() for w in _WORD.findall(text, start, end)]
    if not words:
        return False
    if len(words) == 1 and len(words[0]) < 2:
        return False  # a letter: "MS C runtime", "Appendix B"
    before = text[max(0, start - 30) : start]
    if _TITLE_BEFORE.search(before):
        return True
    if len(words) > 1:
        # A word that is no English word (Priya, Storchaka), or a given name then a surname (Mark Smith); a run
        # of English words only is a heading or a term (Authentication Handler, Love Story).
        return any(w not in lexicon.common for w in words) or (
            words[0] in lexicon.first and _is_name(words[-1], lexicon) and words[-1] in lexicon.last
        )
    word = words[0]
    if word in _ABBREVIATED_DAYS or _MONTH_NAME.fullmatch(word) or word in CALENDAR or word in lexicon.languages:
        return False
    if _INITIAL_BEFORE.search(before) or _INITIAL_AFTER.match(text, end):
        return True
    if not _is_name(word, lexicon) or word in lexicon.place_words or before.rstrip(" '\"").endswith("="):
        return False  # no name, a place (Paris, Washington), or a value in code (metaclass=Meta)
    if word not in lexicon.first and text[end : end + 2] in ("'s", "’s"):
        return False  # a lone surname's: a firm, a journal or an eponym (Borland's compiler, Pearson's r)
    if word in lexicon.common:
        sentence = re.split(r"[.!?\n]", before)[-1]
        return any(w in _STRONG_CUES for w in re.findall(r"[^\W\d_]+", sentence.casefold())[-2:])
    return not _used_as_term(text, word)


def _used_as_term(text: str, word: str) -> bool:
    """Does `text` also write `word` (casefolded) in lower case or inside an identifier (emin, MIN_EMIN, .emin)?

    Substring tests first (a C scan each), the regex only on a hit: this runs once per lone name on the page.
    """
    escaped = re.escape(word)
    if word in text and re.search(rf"(?<![\w.]){escaped}(?!\w)", text):
        return True
    forms = (word, word.upper(), word.title())
    if any(f"_{f}" in text or f".{f}" in text or f"{f}_" in text for f in forms):
        return re.search(rf"(?i:[_.]{escaped}\b|\b{escaped}_)", text) is not None
    return False


def _probability(weights: tuple[float, ...], features: list[float]) -> float:
    z = sum(w * f for w, f in zip(weights, features, strict=True))
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


# Street types that make "<number> <Capitalised words> <type>" an address (English-speaking countries).
_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Boulevard|Blvd|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|Terrace|Way|Close|"
    r"Crescent|Parkway|Pkwy|Highway|Hwy|Row|Mews|Gardens|Walk|Grove|Circle|Cir|Trail|Hill|Parade"
)
_UNIT = r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Floor|Fl\.?)\s*[\w-]+)?"
_CITY_TAIL = (
    r"(?:,\s*[A-Z][\w'’-]+(?:\s[A-Z][\w'’-]+){0,2}"  # , City
    # then a ZIP code (with a state), a UK postcode, or a state
    r"(?:,?\s+(?:[A-Z]{2}\s+)?\d{5}(?:-\d{4})?|,?\s+[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|,\s*[A-Z]{2}\b)?)?"
)
_ADDRESS_PATTERNS = [
    # 221B Baker Street, London NW1 6XE / 1600 Pennsylvania Ave NW, Washington, DC 20500
    re.compile(
        rf"\b\d{{1,5}}[A-Za-z]?(?:-\d{{1,4}})?\s+(?:[A-Z][\w'’.-]*\s+){{0,3}}(?:{_STREET_TYPES})\b\.?"
        rf"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?{_UNIT}{_CITY_TAIL}"
    ),
    # Hauptstraße 5, 10115 Berlin / Keizersgracht 123 / Kungsgatan 12
    re.compile(
        r"\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|straat|laan|gracht|"
        r"plein|kade|singel|gatan|vägen|gade|vej|veien)\s+\d{1,4}[a-z]?(?:,\s*\d{4,5}\s+[A-ZÄÖÜ][\wäöüß-]+)?"
    ),
    # 12 rue de la Paix, 75002 Paris / 3, avenue Victor Hugo
    re.compile(
        r"\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|place|allée|chemin|impasse|quai|route|cours)"
        r"\s+(?:(?:de|du|des|de la|d'|l')\s*)?[A-ZÉÈ][\w'’-]+(?:\s+[A-ZÉÈ][\w'’-]+){0,3}"
        r"(?:,\s*\d{5}\s+[A-ZÉÈ][\w'’-]+)?"
    ),
    # Calle Mayor 10 / Via Roma, 15 / Avenida da Liberdade 110
    re.compile(
        r"\b(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Carrer|Rua|Via|Viale|Piazza|Corso|Largo)\s+"
        r"(?:(?:de|del|de la|da|do|dos|della|delle|dei)\s+)?[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+){0,3},?\s*(?:n\.?\s*)?"
        r"\d{1,4}[A-Za-z]?(?:,\s*\d{5}\s+[A-Z][\w'’-]+)?"
    ),
]
_MONTHS = (
    r"Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|januar|februar|märz|mai|juni|juli|oktober|dezember|janvier|"
    r"février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|enero|febrero|marzo|abril|mayo|"
    r"junio|julio|agosto|septiembre|octubre|noviembre|diciembre"
)
_MONTH_NAME = re.compile(rf"(?i:{_MONTHS})")
_DATE = (
    rf"(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}[./-]\d{{1,2}}[./-]\d{{2,4}}|\d{{1,2}}(?:st|nd|rd|th)?\.?\s+(?:of\s+)?"
    rf"(?:{_MONTHS})\.?,?\s+\d{{4}}|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
_DOB = re.compile(
    rf"(?i:\b(?:born(?:\s+on)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday|geboren(?:\s+am)?|"
    rf"geburtsdatum|né(?:e)?\s+le|date\s+de\s+naissance|fecha\s+de\s+nacimiento|nacid[oa]\s+el|nato\s+il|nata\s+il)"
    rf"\b[^\n\d]{{0,25}}?)(?P<value>(?i:{_DATE}))"
)
_DOCUMENT_CUE = (
    r"\b(?:passport|passport\s+(?:no|number|#)|reisepass(?:nummer)?|passeport|pasaporte|passaporto|"
    r"driver'?s?\s+licen[cs]e|driving\s+licen[cs]e|licen[cs]e\s+(?:no|number)|national\s+id(?:entity)?(?:\s+card)?|"
    r"id\s+card|identity\s+card|personalausweis(?:nummer)?|carte\s+d'identité|dni|nie|nino|"
    r"national\s+insurance(?:\s+number)?|aadhaar|tax\s+id|tin|steuer-?id)\b"
)
_SSN_CUE = r"\b(?:ssn|social\s+security(?:\s+(?:no|number|#))?)\b"
_DOCUMENT = re.compile(
    rf"(?i:{_DOCUMENT_CUE}[^\n\w]{{0,4}}(?:(?:no|number|nr|num|n°|#|is|was|:)\W{{0,3}}){{0,2}})"
    r"(?P<value>(?=[A-Z0-9 -]*\d)[A-Z0-9][A-Z0-9 -]{4,16}[A-Z0-9])\b"
)
_SSN_SPACED = re.compile(rf"(?i:{_SSN_CUE}[^\n\d]{{0,15}}?)(?P<value>\d{{3}}[ .]\d{{2}}[ .]\d{{4}})\b")
# Both patterns start with their cue words, matched ignoring case: a text where neither cue occurs needs neither
# search. The cues are looked for in `text.lower()` without IGNORECASE, which is ~3.5x faster than the
# case-insensitive scan (0.26 against 0.90 CPU-s over the 17 MB of benchmarks/real_text_corpus.py), and the
# full patterns then run only on texts with a cue (a few in a thousand there). Exact, not a heuristic: checked
# over every code point, `c.lower() == x` is the case-insensitive match of each letter x of the cues, except
# that "İ" and "ı" also match "i" and "ſ" matches "s" (texts holding one of those take both searches), and
# `lower()` keeps every other character's length and whether it is a word character, a space or a newline.
_ID_CUES = re.compile(f"{_DOCUMENT_CUE}|{_SSN_CUE}")
_CASE_FOLD_EXTRAS = ("İ", "ı", "ſ")


def _may_hold_id_document(text: str) -> bool:
    """False only when neither `_DOCUMENT` nor `_SSN_SPACED` can match in `text` (no cue word in it)."""
    return _ID_CUES.search(text.lower()) is not None or any(c in text for c in _CASE_FOLD_EXTRAS)


def _may_hold_ssn(text: str) -> bool:
    """False only when `_SSN_SPACED` cannot match in `text` (neither of its cue words in it).

    Its cues ("ssn", "social security") are looked for as substrings of `text.lower()` (a C substring search,
    ~10x faster than scanning for every identity-document cue), under the rule `_may_hold_id_document` states.
    """
    lowered = text.lower()
    return "ssn" in lowered or "social" in lowered or any(c in text for c in _CASE_FOLD_EXTRAS)


def _trim_document(value: str) -> str:
    """A document number ends at its last digit-bearing chunk (no trailing words caught by the pattern)."""
    chunks = value.split(" ")
    while len(chunks) > 1 and not any(c.isdigit() for c in chunks[-1]):
        chunks.pop()
    return " ".join(chunks)


class PeopleFinder:
    """Find person names, street addresses, dates of birth and identity-document numbers in text.

    `types` are any of `PEOPLE_TYPES`, or "us_ssn" for only the SSN pattern that "id_document" also runs.

    Examples:
        >>> finder = PeopleFinder()
        >>> [(t, "Please call John Smith at home."[s:e]) for t, s, e in finder.find("Please call John Smith at home.")]
        [('person', 'John Smith')]
    """

    def __init__(self, types: tuple[str, ...] = PEOPLE_TYPES, *, threshold: float | None = None) -> None:
        self.types = frozenset(types)
        self._weights, trained_threshold = _model() if "person" in self.types else ((), 0.5)
        self.threshold = trained_threshold if threshold is None else threshold
        self._lexicon = _lexicon() if "person" in self.types else None

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """Every span found, as `(type, start, end)`, possibly overlapping across types."""
        found: list[tuple[str, int, int]] = []
        if "address" in self.types:
            for pattern in _ADDRESS_PATTERNS:
                found += [
                    ("address", m.start(), m.start() + len(m.group().rstrip(".,"))) for m in pattern.finditer(text)
                ]
        if "date_of_birth" in self.types:
            found += [("date_of_birth", m.start("value"), m.end("value")) for m in _DOB.finditer(text)]
        if "id_document" in self.types and _may_hold_id_document(text):
            for m in _DOCUMENT.finditer(text):
                value = _trim_document(m.group("value"))
                found.append(("id_document", m.start("value"), m.start("value") + len(value)))
            found += [("us_ssn", m.start("value"), m.end("value")) for m in _SSN_SPACED.finditer(text)]
        elif "us_ssn" in self.types and _may_hold_ssn(text):  # SSNs only (what `id_document` finds beside them)
            found += [("us_ssn", m.start("value"), m.end("value")) for m in _SSN_SPACED.finditer(text)]
        if "person" in self.types:
            taken = [(s, e) for _, s, e in found]
            found += [
                ("person", s, e) for s, e in self.person_spans(text) if not any(s < te and ts < e for ts, te in taken)
            ]
        return found

    def person_probabilities(self, text: str) -> list[tuple[re.Match[str], float]]:
        """Each candidate word of `text` with the classifier's probability that it is part of a name."""
        lexicon = self._lexicon or _lexicon()
        tokens = list(_WORD.finditer(text))
        return [
            (tok, _probability(self._weights, person_features(text, tokens, i, lexicon)))
            for i, tok in enumerate(tokens)
            if _candidate(text, tok, lexicon)
        ]

    def person_spans(self, text: str) -> list[tuple[int, int]]:
        """Name spans: runs of capitalised words the classifier scores at or above the threshold."""
        spans: list[list[int]] = []
        for tok, p in self.person_probabilities(text):
            if p < self.threshold:
                continue
            gap = text[spans[-1][1] : tok.start()] if spans else None
            joinable = gap is not None and (
                gap in (" ", "-")
                or re.fullmatch(r" (?:[a-z]{1,3} ){1,2}", gap) is not None
                and all(w in PARTICLES for w in gap.split())
            )
            if joinable:
                spans[-1][1] = tok.end()
            else:
                spans.append([tok.start(), tok.end()])
        lexicon = self._lexicon or _lexicon()
        return [
            (s, e)
            for s, e in spans
            if not _in_place(text, s, e, lexicon.places) and _name_evidence(text, s, e, lexicon)
        ]


def describe_model() -> dict[str, Any]:
    """The shipped classifier's features, weights and threshold (for docs and tests)."""
    weights, threshold = _model()
    return {"features": list(FEATURES), "weights": list(weights), "threshold": threshold}
