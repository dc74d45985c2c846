"""Claim analysis for the offline groundedness judge: atomic claims, alignment and typed slots.

An answer is split into claims and each claim into clauses; every clause is aligned to the context
sentence that best supports it, and typed slots are compared between them: numbers with units
(number words included: "ten-year" is 10 year), dates, named entities and codes, polarity
(negation), opposites on a shared scale (a hand-written lexicon), and roles (who did what to whom).
The result is a small feature vector per claim; `_offline_judge` turns it into a probability with
a logistic model trained on generated perturbations (scripts/train_groundedness.py). Pure text
and numpy: no model is loaded here, and cosine similarities come from the caller.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

__all__ = ["FEATURES", "ClauseSlots", "analyse", "claim_features", "split_atomic_claims", "split_sentences"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# Codes (LX200, db-02), times (2:06:12), numbers (1,480 / 3.5), words, currency and percent signs.
_TOKEN = re.compile(r"[A-Za-z]+-?\d+[A-Za-z]*|\d+(?::\d\d)+|\d+(?:,\d{3})*(?:\.\d+)?|[A-Za-z]+(?:'[A-Za-z]+)?|[$€£%]")
_CLAUSE_SPLIT = re.compile(
    r"\s*[;:]\s+|,\s+(?=(?:and|but|while|whereas|although|though|so|which|who|with)\b)|,\s+|"
    r"\s+(?=(?:but|while|whereas|although|though)\s)|\s+and\s+(?=(?:then\s+)?[a-z]+(?:ed|es|s)\b)|\s*\(\s*|\s*\)\s*"
)

_ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "dozen": 12, "twice": 2, "thrice": 3,
}  # fmt: skip
# "one" is a pronoun after these ("no one", "the one", "which one"), not a number.
_NOT_ONE = frozenset("no any every some each the this that which no-one someone".split())
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000, "bn": 1_000_000_000}
_FRACTIONS = {"half": 0.5, "quarter": 0.25}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
}  # fmt: skip
_UNITS = {
    "year": "year", "years": "year", "yr": "year", "month": "month", "months": "month", "week": "week",
    "weeks": "week", "day": "day", "days": "day", "hour": "hour", "hours": "hour", "hr": "hour", "h": "hour",
    "minute": "minute", "minutes": "minute", "min": "minute", "mins": "minute", "second": "second",
    "seconds": "second", "sec": "second", "s": "second", "metre": "m", "metres": "m", "meter": "m", "meters": "m",
    "m": "m", "km": "km", "kilometre": "km", "kilometres": "km", "kilometer": "km", "kilometers": "km",
    "mile": "mile", "miles": "mile", "kg": "kg", "kilo": "kg", "kilos": "kg", "kilogram": "kg", "kilograms": "kg",
    "g": "g", "gram": "g", "grams": "g", "mg": "mg", "gb": "gb", "mb": "mb", "tb": "tb", "volt": "v", "volts": "v",
    "v": "v", "hz": "hz", "degree": "degree", "degrees": "degree", "percent": "%", "%": "%", "dollar": "$",
    "dollars": "$", "$": "$", "usd": "$", "euro": "€", "euros": "€", "€": "€", "eur": "€", "pound": "£",
    "pounds": "£", "£": "£", "gbp": "£", "am": "am", "pm": "pm", "w": "w", "watt": "w", "watts": "w", "kw": "kw",
    "kwh": "kwh", "mah": "mah", "ml": "ml", "l": "l", "litre": "l", "litres": "l", "liter": "l", "liters": "l",
    "cm": "cm", "mm": "mm", "kph": "kph", "mph": "mph", "°c": "degree", "celsius": "degree", "c": "degree",
}  # fmt: skip
_MONTHS = {
    m: i + 1
    for i, ms in enumerate(
        (
            "january jan",
            "february feb",
            "march mar",
            "april apr",
            "may",
            "june jun",
            "july jul",
            "august aug",
            "september sep sept",
            "october oct",
            "november nov",
            "december dec",
        )  # fmt: skip
    )
    for m in ms.split()
}
_WEEKDAYS = {
    d: i
    for i, ds in enumerate(
        (
            "monday mon",
            "tuesday tue tues",
            "wednesday wed",
            "thursday thu thurs",
            "friday fri",
            "saturday sat",
            "sunday sun",
        )
    )  # fmt: skip
    for d in ds.split()
}
_NEGATIONS = frozenset(
    """not no never none cannot nor neither without nothing nobody nowhere isn't doesn't didn't wasn't weren't
    aren't won't can't don't hasn't haven't hadn't shouldn't wouldn't couldn't mustn't non unable""".split()
)
# Verbs and adjectives that say "no" without a negation word: "must avoid alcohol" = "do not drink alcohol".
_NEGATIVE_WORDS = "avoid refrain cease discontinue abolish lack absent unavailable exempt".split()


@cache
def _negative_stems() -> frozenset[str]:  # noqa: N802 - a constant, built once the stemmer exists
    return frozenset(_stem(w) for w in _NEGATIVE_WORDS)


_PRONOUNS = frozenset("he she it they his her its their this these them him".split())
_STOPWORDS = frozenset(
    """a an the and or but if then of to in on at by for with from as is are was were be been being it its this
    that these those there their they them he she his her we our you your i me my which who whom whose what when
    where why how do does did has have had so such than too very can could would should may might will shall
    also about into over under after before during between through up down out off again further once all any
    both each few more most other some only own same just yes get gets got per each every via its it's one's
    must need needs needed""".split()
)
_IRREGULAR = {
    "beaten": "beat", "won": "win", "wins": "win", "bought": "buy", "sold": "sell", "fell": "fall", "fallen": "fall",
    "rose": "rise", "risen": "rise", "ran": "run", "led": "lead", "left": "leave", "paid": "pay", "made": "make",
    "took": "take", "taken": "take", "gave": "give", "given": "give", "came": "come", "went": "go", "gone": "go",
    "sent": "send", "kept": "keep", "held": "hold", "began": "begin", "begun": "begin", "found": "find",
    "brought": "bring", "built": "build", "wrote": "write", "written": "write", "lost": "lose", "told": "tell",
    "met": "meet", "chose": "choose", "chosen": "choose", "broke": "break", "broken": "break", "drove": "drive",
    "driven": "drive", "ate": "eat", "eaten": "eat", "grew": "grow", "grown": "grow", "knew": "know",
    "known": "know", "shown": "show", "saw": "see", "seen": "see", "done": "do", "did": "do", "sat": "sit",
    "spent": "spend", "set": "set", "put": "put", "cut": "cut", "shut": "shut", "lay": "lie", "lies": "lie",
    "better": "good", "best": "good", "worse": "bad", "worst": "bad", "people": "person", "children": "child",
    "men": "man", "women": "woman", "feet": "foot", "teeth": "tooth",
}  # fmt: skip
# Synonyms folded to one stem so paraphrases overlap; opposites are in _SCALES_LEXICON instead.
_SYNONYMS = {
    word: group.split()[0]
    for group in (
        "finish complete end",
        "buy acquire purchase",
        "begin start commence",
        "big large huge",
        "small little tiny",
        "tall high",
        "receive get obtain",
        "require need",
        "fix repair resolve",
        "send dispatch ship",
        "price cost fee",
        "quick fast rapid",
        "choose select pick",
        "delete remove erase",
        "defeat beat",
        "manage run head lead",
        "car vehicle",
        "reply answer respond",
        "help assist support",
        "show display",
        "leave depart",
        "arrive reach",
        "stop halt",
        "allow permit",
        "prohibit ban forbid",
        "build construct",
        "try attempt",
        "say state",
        "use utilise utilize",
        "return refund",
        "job role position",
        "staff employee worker",
        "client customer",
        "bag luggage suitcase",
        "doctor physician",
        "automatically automatic",
        "manually manual",
        "rain rainfall",
        "approve sign",
        "work function operate",
        "grow increase rise climb",
        "decrease drop fall decline",
        "sea ocean",
        "town city",
        "company firm business",
        "shop store",
        "mistake error",
        "problem issue fault",
        "bug defect",
        "cancel cancellation",
        "twice double",
        "lake loch",
    )
    for word in group.split()
}
# Words on a scale: (scale, sign). Two texts using one scale with opposite signs contradict each other;
# "not" in the same clause flips the sign. Hand-written (WordNet does not ship offline here).
_SCALE_GROUPS = {
    "open": ("open opened opens reopen", "closed close closes shut"),
    "permit": (
        "allow allowed allows permit permitted permits may authorised authorized legal entitled eligible",
        "prohibit prohibited prohibits forbid forbidden forbids ban banned bans illegal barred ineligible",
    ),
    "include": ("include included includes including inclusive", "exclude excluded excludes excluding only-room"),
    "enable": ("enable enabled enables active", "disable disabled disables inactive"),
    "accept": ("accept accepted accepts approve approved", "reject rejected rejects refuse refused deny denied"),
    "auto": ("automatic automatically auto", "manual manually yourself hand"),
    "ns": ("north northern northward northwards", "south southern southward southwards"),
    "ew": ("east eastern eastward eastwards", "west western westward westwards"),
    "clock": ("clockwise", "anticlockwise counterclockwise counter-clockwise anti-clockwise"),
    "temp": ("hot warm warmer hotter heat heated", "cold cool colder cooler chilled"),
    "wet": ("wet rainy damp humid wetter", "dry drier dryer arid"),
    "above": ("above over exceed exceeds exceeding beyond", "below under beneath"),
    "high": ("high higher highest tall taller tallest upper", "low lower lowest short shorter shortest"),
    "rise": (
        "rise rose risen rises rising increase increased increases up gain gained gains grow grew grown climb climbed"
        " surge surged jump jumped",
        "fall fell fallen falls falling decrease decreased decreases down drop dropped drops decline declined"
        " declines slump slumped plunge plunged",
    ),
    "win": ("win won wins winner victory beat beats defeat defeated", "lose lost loses loser losing defeat-noun"),
    "order": ("first earliest earlier before prior previous preceding", "last latest later after next subsequent"),
    "speed": ("fast faster fastest quick quicker quickest rapid", "slow slower slowest"),
    "cheap": ("cheap cheaper cheapest inexpensive affordable", "expensive pricier priciest costly costlier dear"),
    "long": ("long longer longest lengthy", "brief briefer"),
    "big": ("big bigger biggest large larger largest huge major", "small smaller smallest little tiny minor"),
    "heavy": ("heavy heavier heaviest", "light lighter lightest"),
    "more": ("more most maximum max plus extra additional", "less least fewer fewest minimum min"),
    "freq": ("always constantly permanently forever", "sometimes rarely occasionally seldom temporarily"),
    "succeed": ("succeed succeeded succeeds success successful worked pass passed", "fail failed fails failure"),
    "true": ("true correct valid right", "false incorrect invalid wrong"),
    "free": ("free complimentary", "charge charged charges cost costs fee fees paid"),
    "inside": ("inside indoor indoors internal interior inland", "outside outdoor outdoors external exterior abroad"),
    "domestic": ("domestic home national local", "international foreign overseas abroad"),
    "full": ("full", "empty"),
    "safe": ("safe safely harmless", "unsafe dangerous harmful"),
    "required": ("required mandatory compulsory obligatory", "optional voluntary"),
    "recommend": ("recommended recommend advised", "discouraged"),
    "young": ("young younger youngest new newer newest junior", "old older oldest senior"),
    "early": ("early", "late"),
    "start": ("start starts started begin began opening", "end ends ended stop stopped closing"),
    "same": ("same identical equal", "different unlike"),
    "public": ("public", "private"),
    "online": ("online", "offline paper"),
    "plus": ("positive profit surplus", "negative loss deficit"),
    "majority": ("majority", "minority"),
    "import": ("import imports imported", "export exports exported"),
    "wide": ("wide wider widest broad", "narrow narrower narrowest"),
    "strong": ("strong stronger strongest", "weak weaker weakest"),
    "hard": ("hard harder difficult", "easy easier simple"),
    "incremental": ("incremental", "full-copy"),
}
_SCALES_LEXICON: dict[str, tuple[str, int]] = {}
for _scale, (_plus, _minus) in _SCALE_GROUPS.items():
    _SCALES_LEXICON.update(dict.fromkeys(_plus.split(), (_scale, 1)))
    _SCALES_LEXICON.update(dict.fromkeys(_minus.split(), (_scale, -1)))
_PASSIVE = re.compile(r"\b(?:is|are|was|were|been|be|being|gets|got)\s+(?:\w+\s+){0,2}?by\b", re.IGNORECASE)

FEATURES = (
    # the larger of the best embedding cosine to a sentence or adjacent pair and the share of the
    # claim's content words in its best passage (MiniLM rates "fifteen seconds" vs "15 seconds" 0.43)
    "relatedness",
    "coverage_context",  # share of the claim's content words anywhere in the contexts
    "novel_words",  # log(1 + content words found nowhere in the contexts)
    "clause_coverage",  # lowest share, over the claim's clauses, of words found in the clause's aligned sentence
    "number_absent",  # claim numbers found nowhere in the contexts
    "number_misplaced",  # claim numbers not in the aligned sentence but elsewhere in the contexts
    "unit_mismatch",  # a number present with another unit
    "date_mismatch",  # a month or weekday absent from the aligned sentence
    "entity_absent",  # names and codes found nowhere in the contexts
    "entity_misplaced",  # names and codes found in the contexts but not in the aligned sentence
    "words_misplaced",  # other content words found in the contexts but not in the aligned sentence
    "polarity_flip",  # negated on one side only
    "scale_conflict",  # opposite ends of one scale (cheaper / more expensive)
    "role_swap",  # the same two names on either side of the same verb, reversed
)


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (on `.`, `!`, `?` followed by a capital or digit)."""
    return [part.strip() for part in _SENTENCE.split(text.strip()) if part.strip()]


def split_atomic_claims(text: str) -> list[str]:
    """Split an answer into claims: its sentences, and the parts of a sentence joined by `;`.

    Examples:
        >>> split_atomic_claims("Basic costs $12; Plus costs $20. Both have trials.")
        ['Basic costs $12', 'Plus costs $20.', 'Both have trials.']
    """
    claims: list[str] = []
    for sentence in split_sentences(text):
        parts = [part.strip() for part in sentence.split(";") if len(_TOKEN.findall(part)) >= 2]
        claims.extend(parts or [sentence])
    return claims


def _suffixes(word: str) -> str:
    # A light stemmer, written by hand to keep this module free of NLP dependencies: plural, then
    # -ing/-ed, then -ly, then a final e, so invoice/invoices and reproduce/reproduced meet.
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and (word.endswith(("ches", "shes")) or (word.endswith("es") and word[-3] in "sxz")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsfz":
                word = word[:-1]  # shipped -> ship, planned -> plan
            break
    if len(word) > 5 and word.endswith("ly"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("i"):
        word = word[:-1] + "y"  # applied -> appli -> apply
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


@lru_cache(maxsize=1)
def _synonym_stems() -> dict[str, str]:
    return {_suffixes(_IRREGULAR.get(w, w)): _suffixes(_IRREGULAR.get(g, g)) for w, g in _SYNONYMS.items()}


@lru_cache(maxsize=50_000)
def _stem(word: str) -> str:
    word = word.lower()
    word = _suffixes(_IRREGULAR.get(word, word))
    return _synonym_stems().get(word, word)


@cache
def _wordnet() -> tuple[dict[str, frozenset[str]], frozenset[tuple[str, str]]]:
    """WordNet's synonyms and opposites as stems (package data built by scripts/build_wordnet_lexicon.py)."""
    data = json.loads(resources.files("keel.evals").joinpath("data", "wordnet_lexicon.json").read_text())
    synonyms: dict[str, set[str]] = {}
    for word, others in data["synonyms"].items():
        stem = _stem(word)
        synonyms.setdefault(stem, set()).update(_stem(o) for o in others)
    opposites: set[tuple[str, str]] = set()
    for a, b in data["antonyms"]:
        sa, sb = _stem(a), _stem(b)
        if sa != sb and sb not in synonyms.get(sa, ()):
            opposites.update({(sa, sb), (sb, sa)})
    return {k: frozenset(v - {k}) for k, v in synonyms.items()}, frozenset(opposites)


def covered(words: Iterable[str], target: set[str] | frozenset[str]) -> set[str]:
    """The stems of `words` found in `target`, directly or through a WordNet synonym ("guarantee"/"warrant")."""
    synonyms = _wordnet()[0]
    return {w for w in words if w in target or not synonyms.get(w, frozenset()).isdisjoint(target)}


def opposed(claim: set[str], source: set[str]) -> bool:
    """Whether the claim uses a word whose WordNet opposite the source uses instead ("permitted"/"prohibited")."""
    opposites = _wordnet()[1]
    mine, theirs = claim - source, source - claim
    return any(
        ((a, b) in opposites and (a, b) not in _CONVERSES) or _prefixed(a, b) or _prefixed(b, a)
        for a in mine
        for b in theirs
    )


# WordNet opposites that name one event from its two sides ("you can buy it" = "it is sold"): role
# swaps, not contradictions, so they are left to the role check.
_CONVERSES = frozenset(
    (x, y)
    for a, b in (("buy", "sell"), ("lend", "borrow"), ("send", "receive"), ("teach", "learn"), ("give", "take"))
    for x, y in ((_stem(a), _stem(b)), (_stem(b), _stem(a)))
)


_NEGATING_PREFIXES = ("un", "non", "in", "im", "il", "ir", "dis")


def _prefixed(a: str, b: str) -> bool:
    """Whether stem `a` is stem `b` with a negating prefix ("unencrypted"/"encrypted", "disabled"/"abled")."""
    return len(b) >= 4 and any(a == p + b or a == f"{p}-{b}" for p in _NEGATING_PREFIXES)


# Units one number may be restated in ("two weeks" / "14 days", "12 km" / "12,000 metres").
_CONVERSIONS = {
    "week": (("day", 7),), "day": (("hour", 24), ("week", 1 / 7)), "hour": (("minute", 60), ("day", 1 / 24)),
    "minute": (("second", 60), ("hour", 1 / 60)), "second": (("minute", 1 / 60),), "year": (("month", 12),),
    "month": (("year", 1 / 12),), "km": (("m", 1000),), "m": (("km", 1 / 1000), ("cm", 100)), "kg": (("g", 1000),),
    "g": (("kg", 1 / 1000),), "l": (("ml", 1000),), "ml": (("l", 1 / 1000),),
}  # fmt: skip


def restated(numbers: dict[str, set[str | None]]) -> dict[str, set[str]]:
    """Each number with the values it may be written as in another unit: {"2": {"2", "14"}} for two weeks."""
    out: dict[str, set[str]] = {}
    for value, units in numbers.items():
        forms = {value}
        number = _number_value(value)
        for unit in units:
            # A share written as a fraction or a percentage: "a quarter" / "25%".
            factors: tuple[tuple[str | None, float], ...] = ()
            if unit is None and number is not None and 0 < number < 1:
                factors = ((None, 100),)
            elif unit == "%":
                factors = ((None, 0.01),)
            for _, factor in factors + _CONVERSIONS.get(unit or "", ()):
                if number is not None and abs(number * factor - round(number * factor, 3)) < 1e-9:
                    forms.add(_fmt(round(number * factor, 3)))
        out[value] = forms
    return out


def _number_value(token: str) -> float | None:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def _fmt(value: float, digits: str | None = None) -> str:
    """A number's canonical text: "1480", "3.5"; exact for integers below 10^15 ("1234567", not "1.23457e+06").

    Past that a float cannot tell neighbours apart, so `digits` (the number as written, without commas
    or leading zeros) is kept instead: 10^400 and 10^401 stay two numbers, not both "inf".
    """
    if not math.isfinite(value) or abs(value) >= 1e15:
        return digits or f"{value:.15g}"
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.12g}"


@dataclass(slots=True)
class _Token:
    text: str
    lower: str
    index: int  # position in its text
    initial: bool  # first word of a sentence


@dataclass(slots=True)
class ClauseSlots:
    """The typed slots of one clause: content stems, numbers, dates, names, polarity, scales, role order."""

    text: str
    content: set[str] = field(default_factory=set)
    numbers: dict[str, set[str | None]] = field(default_factory=dict)  # value -> units seen with it
    dates: set[str] = field(default_factory=set)
    entities: set[str] = field(default_factory=set)  # lower-cased name words and codes
    entity_order: list[str] = field(default_factory=list)  # name groups in order of appearance
    words_order: list[str] = field(default_factory=list)  # content stems in order
    negated: bool = False
    negative: bool = False  # negated, or saying no with a verb ("avoid", "discontinued"), odd times
    scales: dict[str, int] = field(default_factory=dict)
    passive: bool = False
    pronoun: bool = False


def _tokens(text: str) -> list[_Token]:
    text = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])|(?<=\d)-(?=[A-Za-z])", " ", text)
    out: list[_Token] = []
    initial = True
    for i, match in enumerate(_TOKEN.finditer(text)):
        word = match.group(0)
        out.append(_Token(word, word.lower(), i, initial))
        before = text[match.end() : match.end() + 2]
        initial = bool(re.match(r"[.!?:]\s", before)) or word in ('"',)
    return out


def _spelt_number(tokens: list[_Token], i: int) -> tuple[float, int]:
    # "twenty six" -> 26, "two and a half" -> 2.5, "one hundred" -> 100; returns (value, index after it).
    value = current = 0.0
    j = i
    while j < len(tokens):
        w = tokens[j].lower
        if w in _ONES:
            current += _ONES[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w in _SCALES and j > i:
            current = max(current, 1.0) * _SCALES[w]
            if _SCALES[w] >= 1000:
                value, current = value + current, 0.0
        elif w == "and" and [t.lower for t in tokens[j + 1 : j + 3]] == ["a", "half"]:
            current += 0.5
            j += 2
        else:
            break
        j += 1
    return value + current, j


def _words_to_numbers(tokens: list[_Token]) -> list[_Token]:
    # Folds number words into digits, "4.2 million" into 4200000, and ordinals into #1, #2...
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        value: float | None = None
        digits: str | None = None
        j = i
        if tok.lower == "one" and (
            (i and tokens[i - 1].lower in _NOT_ONE)
            or i + 1 == len(tokens)
            or (tokens[i + 1].lower in _STOPWORDS and tokens[i + 1].lower not in _UNITS)
        ):
            pass  # "no one", "a new one was ordered", "one of them": a pronoun, not a number
        elif tok.lower in _ONES or tok.lower in _TENS:
            value, j = _spelt_number(tokens, i)
        elif _number_value(tok.lower) is not None and ":" not in tok.lower:
            value = _number_value(tok.lower)
            digits = tok.lower.replace(",", "").lstrip("0") or "0"
            j = i + 1
            if value is not None and j < len(tokens) and tokens[j].lower in _SCALES:
                value *= _SCALES[tokens[j].lower]
                digits += "0" * round(math.log10(_SCALES[tokens[j].lower])) if "." not in digits else ""
                j += 1
        elif tok.lower in ("noon", "midday", "midnight"):
            # "closes at noon" = "closes at 12pm"
            meridian = "am" if tok.lower == "midnight" else "pm"
            out += [_Token("12", "12", tok.index, tok.initial), _Token(meridian, meridian, tok.index, False)]
            i += 1
            continue
        elif (
            tok.lower in _FRACTIONS
            and (
                (i and tokens[i - 1].lower in ("a", "an", "one"))
                or (i + 1 < len(tokens) and tokens[i + 1].lower in ("a", "an"))
            )
            and not (i + 1 < len(tokens) and tokens[i + 1].lower == "as")
        ):
            value, j = _FRACTIONS[tok.lower], i + 1  # "a quarter" (= 25%), "half an hour"; not "half as often"
        elif tok.lower in _ORDINALS and not (out and _number_value(out[-1].lower) is not None):
            out.append(_Token(f"#{_ORDINALS[tok.lower]}", f"#{_ORDINALS[tok.lower]}", tok.index, tok.initial))
            i += 1
            continue
        if value is None:
            out.append(tok)
            i += 1
            continue
        text = _fmt(value, digits)
        out.append(_Token(text, text, tok.index, tok.initial))
        i = j
    return out


def _unit_after(tokens: list[_Token], k: int) -> str | None:
    if k > 0 and tokens[k - 1].lower in ("$", "€", "£"):
        return tokens[k - 1].lower
    for t in tokens[k + 1 : k + 3]:
        if t.lower in _UNITS:
            return _UNITS[t.lower]
        if t.lower not in ("per", "a", "an", "of"):
            break
    return None


def _is_code(word: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z]+-?\d+[A-Za-z]*", word))


def _name_of(tok: _Token, names: frozenset[str]) -> str | None:
    word, lower = tok.text, tok.lower
    if not ((word[:1].isupper() and (not tok.initial or lower in names)) or _is_code(word)):
        return None
    if lower in _MONTHS or lower in _WEEKDAYS or lower in _STOPWORDS or lower == "i":
        return None
    return lower[:-2] if lower.endswith("'s") else lower


def _date_of(word: str) -> str | None:
    lower = word.lower()
    if lower in _MONTHS and (word[0].isupper() or lower != "may"):
        return f"month:{_MONTHS[lower]}"
    day = lower[:-1] if lower.endswith("s") and lower[:-1] in _WEEKDAYS and len(lower) > 4 else lower
    if day in _WEEKDAYS and word[0].isupper():
        return f"day:{_WEEKDAYS[day]}"  # "Sunday" and "Sundays"
    return None


def _scale_of(tokens: list[_Token], k: int) -> tuple[str, int] | None:
    lower = tokens[k].lower
    before = tokens[k - 1].lower if k > 0 else ""
    if lower == "longer" and before in ("no", "any"):
        return None  # "no longer made": a negation, not a length
    if lower in _SCALES_LEXICON:
        scale, sign = _SCALES_LEXICON[lower]
        if scale == "more" and k + 1 < len(tokens) and tokens[k + 1].lower in _SCALES_LEXICON:
            return None  # "more expensive": the adjective carries the scale, "more"/"less" its direction
        return scale, -sign if before in ("less", "fewer", "least") else sign
    if before in ("more", "less", "most", "least") and lower not in _STOPWORDS:
        return f"more:{_stem(lower)}", 1 if before in ("more", "most") else -1
    return None


@lru_cache(maxsize=20_000)
def analyse(text: str, names: frozenset[str] = frozenset()) -> ClauseSlots:
    """The typed slots of a clause or sentence.

    Args:
        text: The clause.
        names: Lower-cased words known to be names (seen capitalised mid-sentence somewhere), so a
            capitalised first word counts as a name only when it is one of them.
    """
    slots = ClauseSlots(text)
    tokens = _words_to_numbers(_tokens(text))
    group: list[str] = []
    for k, tok in enumerate(tokens):
        word, lower = tok.text, tok.lower
        value = _number_value(lower)
        # "15 W", "15 watts": a unit is checked with its number (unit_mismatch), not as a name or word.
        unit = lower in _UNITS and k > 0 and _number_value(tokens[k - 1].lower) is not None
        name = None if unit else _name_of(tok, names)
        if name:
            group.append(name)
            slots.entities.add(name)
            continue
        if group:
            slots.entity_order.append(" ".join(group))
            group = []
        date = _date_of(word)
        if date:
            slots.dates.add(date)
        elif value is not None or ":" in lower or lower.startswith("#"):
            slots.numbers.setdefault(lower, set()).add(None if lower.startswith("#") else _unit_after(tokens, k))
            slots.words_order.append(lower)
        elif (
            lower in _NEGATIONS
            or lower.endswith("n't")
            or (
                # "rather than getting company equipment", "instead of paying": what follows is denied
                (lower, tokens[k + 1].lower if k + 1 < len(tokens) else "") in (("rather", "than"), ("instead", "of"))
            )
        ):
            slots.negated = not slots.negated if lower not in ("no", "none") else True
        elif lower in _PRONOUNS:
            # Only a pronoun near the start stands for someone named in a neighbouring sentence
            # ("She leads ..."); "receive a laptop on their first day" refers within the sentence.
            slots.pronoun = slots.pronoun or k < 4 or lower in ("he", "she", "they", "it", "them", "him")
        scale = _scale_of(tokens, k)
        if scale:
            # Both ends of one scale in one clause ("high ... low", "free of charge") say nothing alone: 0.
            old = slots.scales.get(scale[0])
            slots.scales[scale[0]] = scale[1] if old is None or old == scale[1] else 0
        if lower[0].isalpha() and lower not in _STOPWORDS and lower not in _NEGATIONS and not unit:
            stem = _stem(lower)
            slots.content.add(stem)
            slots.words_order.append(stem)
    if group:
        slots.entity_order.append(" ".join(group))
    if slots.negated:
        slots.scales = {k: -v for k, v in slots.scales.items()}
    slots.negative = slots.negated != (sum(_stem(t.lower) in _negative_stems() for t in tokens) % 2 == 1)
    slots.passive = bool(_PASSIVE.search(text))
    return slots


def names_in(texts: Sequence[str]) -> frozenset[str]:
    """Lower-cased words written with a capital inside a sentence (not as its first word) in `texts`."""
    found: set[str] = set()
    for text in texts:
        for tok in _tokens(text):
            if tok.text[:1].isupper() and not tok.initial and tok.lower not in _STOPWORDS:
                found.add(tok.lower[:-2] if tok.lower.endswith("'s") else tok.lower)
    return frozenset(found)


def split_clauses(sentence: str) -> list[str]:
    """Split a claim into clauses; pieces with fewer than two content words join the previous one."""
    parts = [p for p in _CLAUSE_SPLIT.split(sentence) if p and p.strip()]
    clauses: list[str] = []
    for part in parts:
        if clauses and len(analyse(part).content | set(analyse(part).numbers)) < 2:
            clauses[-1] = f"{clauses[-1]} {part}"
        elif not clauses and len(analyse(part).content | set(analyse(part).numbers)) < 2 and len(parts) > 1:
            clauses.append(part)
        else:
            if clauses and len(analyse(clauses[-1]).content | set(analyse(clauses[-1]).numbers)) < 2:
                clauses[-1] = f"{clauses[-1]} {part}"
            else:
                clauses.append(part)
    return clauses or [sentence]


def _overlap(claim: ClauseSlots, sentence: ClauseSlots) -> float:
    # Names weigh half: in "Dr Okafor leads cardiology" the topic, not the name, says which sentence it is about.
    words = claim.content - claim.entities
    score = len(covered(words, sentence.content)) + 0.5 * len(claim.entities & sentence.entities)
    score += len(set(claim.numbers) & set(sentence.numbers)) + len(claim.dates & sentence.dates)
    total = len(words) + 0.5 * len(claim.entities) + len(claim.numbers) + len(claim.dates)
    return score / total if total else 0.0


def _orders(slots: ClauseSlots) -> list[str]:
    return list(reversed(slots.entity_order)) if slots.passive else slots.entity_order


def _between(order: list[str], a: str, b: str, words: list[str], text: str) -> set[str]:
    # Content stems lying between the first mentions of names a and b.
    low = text.lower()
    start, end = sorted((low.find(a.split()[0]), low.find(b.split()[0])))
    found = re.findall(r"[a-z]+", low[start:end])
    # Words at one end of one scale count as the same verb ("Jensen won ... ahead of Adair" / "Adair beat Jensen").
    scales = {f"scale:{_SCALES_LEXICON[w][0]}:{_SCALES_LEXICON[w][1]}" for w in found if w in _SCALES_LEXICON}
    return ({_stem(w) for w in found} & set(words)) | scales


def _roles(claim: ClauseSlots, sentence: ClauseSlots, order: list[str] | None = None) -> tuple[int, int]:
    """(pairs reversed around a shared verb, pairs reversed at all) of names both texts mention.

    `order` gives the sentence's names in role order when it is read clause by clause (a passive
    clause reverses its own names only).
    """
    order = _orders(sentence) if order is None else order
    c_order = [e for e in _orders(claim) if e in order]
    s_order = [e for e in order if e in c_order]
    swapped = pivoted = 0
    for i, a in enumerate(c_order):
        for b in c_order[i + 1 :]:
            if a != b and a in s_order and b in s_order and s_order.index(a) > s_order.index(b):
                swapped += 1
                shared = _between(c_order, a, b, claim.words_order, claim.text) & _between(
                    s_order, a, b, sentence.words_order, sentence.text
                )
                pivoted += bool(shared - claim.entities)
    return pivoted, swapped


@dataclass(slots=True)
class _ContextIndex:
    sentences: list[str]
    slots: list[ClauseSlots]
    clauses: list[list[ClauseSlots]]  # each sentence's clauses, so negation and roles keep to their clause
    neighbours: list[list[int]]
    content: set[str]
    numbers: set[str]
    entities: set[str]
    dates: set[str]
    names: frozenset[str]
    words: set[str]  # every lower-cased token of the contexts


def index_contexts(contexts: Sequence[str], answer: str = "") -> _ContextIndex:
    """Sentences of the contexts with their slots, and which sentences neighbour which.

    Words written with a capital mid-sentence in the contexts or the answer count as names everywhere.
    """
    names = names_in([*contexts, answer])
    sentences: list[str] = []
    neighbours: list[list[int]] = []
    for context in contexts:
        parts = split_sentences(context)
        start = len(sentences)
        for k in range(len(parts)):
            neighbours.append([start + j for j in (k - 1, k + 1) if 0 <= j < len(parts)])
        sentences.extend(parts)
    slots = [analyse(s, names) for s in sentences]
    return _ContextIndex(
        sentences,
        slots,
        [[analyse(c, names) for c in split_clauses(s)] for s in sentences],
        neighbours,
        set().union(*(s.content for s in slots)) if slots else set(),
        set().union(*(s.numbers for s in slots)) if slots else set(),
        set().union(*(s.entities for s in slots)) if slots else set(),
        set().union(*(s.dates for s in slots)) if slots else set(),
        names,
        {t.lower for c in contexts for t in _tokens(c)},
    )


def _left(order: list[str], k: int) -> set[str]:
    return {w for w in order[max(0, k - 3) : k] if _number_value(w) is None and not w.startswith("#")}


def _right(order: list[str], k: int) -> set[str]:
    # The words after a number up to the next one ("40 hours on low and 6 hours on high").
    out: set[str] = set()
    for w in order[k + 1 : k + 4]:
        if _number_value(w) is not None or w.startswith("#"):
            break
        out.add(w)
    return out


def _numbers_rebound(clause: ClauseSlots, sent: ClauseSlots) -> int:
    """Numbers of both texts that the claim attaches to what the source says of another number.

    The words before a number (three at most) or after it (up to the next number) say what it counts.

    "The exam is worth 30% and the project 70%" against "an exam worth 70% and a project worth 30%":
    the words before 30 in the claim are the words before 70 in the source.
    """
    shared = [w for w in clause.words_order if w in sent.numbers]
    if len(set(sent.numbers)) < 2 or not shared:
        return 0
    where = {w: k for k, w in enumerate(sent.words_order) if w in sent.numbers}
    rebound = 0
    for k, number in enumerate(clause.words_order):
        if number not in where:
            continue
        mine = _left(clause.words_order, k)
        own = len(mine & _left(sent.words_order, where[number]))
        others = [j for n, j in where.items() if n != number and n in clause.numbers and not n.startswith("#")]
        other = max((len(mine & _left(sent.words_order, j)) for j in others), default=0)
        # Or the words that follow it: "40 hours on high" against "40 hours on low and 6 hours on high".
        after = _right(clause.words_order, k)
        own_after = len(after & _right(sent.words_order, where[number]))
        other_after = max((len(after & _right(sent.words_order, j)) for j in others), default=0)
        rebound += (other >= 2 and other > own) or (other_after >= 1 and own_after == 0)
    return rebound


def _subject_misplaced(clause: ClauseSlots, ctx: _ContextIndex) -> int:
    """1 when the clause opens with a name and the sentence that best matches the rest of it lacks that name.

    "Tomas Berg manages the Lisbon office" against "Ana Ribeiro manages the Lisbon office. Tomas Berg
    now heads the Oslo team": what is said (manages, office) is said of someone else.
    """
    tokens = _tokens(clause.text)
    if len(tokens) < 2 or not clause.entity_order or not tokens[0].text[:1].isupper():
        return 0
    subject = clause.entity_order[0]
    # The first word of "Tomas Berg manages" is not known as a name, the second is.
    opening = [tokens[0].lower] + ([tokens[1].lower] if tokens[0].lower not in _STOPWORDS else [])
    if subject.split()[0] not in [w.removesuffix("'s") for w in opening]:
        return 0
    words = clause.content - clause.entities - {_stem(t.lower) for t in tokens if t.text[:1].isupper()}
    numbers = set(clause.numbers)
    if len(words) + len(numbers) < 2:
        return 0

    def said(j: int) -> float:
        return len(covered(words, ctx.slots[j].content)) + len(numbers & set(ctx.slots[j].numbers))

    best = max(range(len(ctx.sentences)), key=lambda j: (said(j), -j))
    holder = ctx.slots[best]
    if said(best) < 2 or set(subject.split()) & holder.entities or holder.pronoun:
        return 0
    return int(subject.split()[0] in ctx.words)


_AUXILIARIES = frozenset(
    "is are was were be been can could may might must will would shall should has have had do does did get gets".split()
)


def _subject_words(text: str) -> list[str]:
    """Content stems of a clause's subject: the words before its first auxiliary (at most four), or its first one."""
    tokens = [t for t in _tokens(text) if t.lower not in ("a", "an", "the", "our", "your", "their", "its")]
    head = []
    for t in tokens[:5]:
        if t.lower in _AUXILIARIES:
            break
        head.append(t)
    else:
        head = tokens[:1]
    if len(head) > 4:
        head = head[:1]
    return [_stem(t.lower) for t in head if t.lower.isalpha() and t.lower not in _STOPWORDS | _PRONOUNS]


def _noun_subject_misplaced(clause: ClauseSlots, ctx: _ContextIndex) -> int:
    """1 when what the clause says is said in the contexts of another subject the contexts also name.

    "Contractors receive a company laptop" against "Permanent staff receive a company laptop ...
    Contractors must use their own devices": the sentence that says the rest names another subject,
    and "contractors" is a subject elsewhere, so the claim moved it; a paraphrase's new word ("kids"
    for "children") is found nowhere else and passes.
    """
    words = _subject_words(clause.text)
    subject = set(words)
    rest = clause.content - subject - clause.entities
    numbers = set(clause.numbers)
    if not subject or len(rest) + len(numbers) < 2 or len(ctx.sentences) < 2:
        return 0

    def said(j: int) -> float:
        return len(covered(rest, ctx.slots[j].content)) + len(numbers & set(ctx.slots[j].numbers))

    best = max(range(len(ctx.sentences)), key=lambda j: (said(j), -j))
    # The subject's head (its last word: "soup" of "tomato soup") must be missing there, another subject
    # named instead, and the claim's subject named by a sentence that says less of the rest.
    if said(best) < 2 or covered(words[-1:], ctx.slots[best].content):
        return 0
    missing = subject - covered(subject, ctx.slots[best].content)
    rival = set(_subject_words(ctx.sentences[best])) - clause.content
    own = [said(j) for j in range(len(ctx.sentences)) if j != best and missing & ctx.slots[j].content]
    return int(bool(rival and own and max(own) < said(best)))


_HIGHER = frozenset("more larger bigger longer higher taller heavier older greater costlier pricier later".split())
_LOWER = frozenset("less fewer smaller shorter lower cheaper lighter younger earlier".split())


def _compared(clause: ClauseSlots, ctx: _ContextIndex) -> int:
    """+1 when "A is cheaper than B" agrees with the numbers the context gives A and B, -1 when not, else 0.

    The comparative before "than" sets the direction ("more expensive", "longer": A's number is the
    larger); A is the name before it, B the first name after it, and each one's number is the first
    number, with a unit, of a context sentence naming it (the same unit for both).
    """
    lowered = [t.lower for t in _tokens(clause.text)]
    if "than" not in lowered:
        return 0
    k = lowered.index("than")
    word, before = lowered[k - 1] if k else "", lowered[k - 2] if k > 1 else ""
    direction = 1 if word in _HIGHER or before == "more" else -1 if word in _LOWER or before == "less" else 0
    if word in ("expensive", "costly") and before == "less":
        direction = -1
    a = next((e for e in reversed(clause.entity_order) if e.split()[0] in " ".join(lowered[:k]).split()), None)
    b = next((e for e in clause.entity_order if e.split()[0] in lowered[k + 1 :]), None)
    if not direction or not a or not b or a == b:
        return 0

    def number(entity: str) -> dict[str | None, float]:
        for slots in ctx.slots:
            if entity.split()[0] in slots.entities:
                return {u: float(v) for v, units in slots.numbers.items() for u in units if u and _number_value(v)}
        return {}

    na, nb = number(a), number(b)
    unit = next((u for u in na if u in nb and na[u] != nb[u]), None)
    if unit is None:
        return 0
    return 1 if (na[unit] > nb[unit]) == (direction > 0) else -1


def _clause_features(
    clause: ClauseSlots,
    ctx: _ContextIndex,
    claim_entities: frozenset[str] = frozenset(),
    claim_negative: bool | None = None,
) -> tuple[dict[str, float], int]:
    best = max(range(len(ctx.sentences)), key=lambda j: (_overlap(clause, ctx.slots[j]), -j))
    sent = ctx.slots[best]
    # A pronoun in the aligned sentence may stand for a name in a neighbouring sentence ("She leads ...").
    reach = [sent] + ([ctx.slots[j] for j in ctx.neighbours[best]] if sent.pronoun else [])
    content = set().union(*(s.content for s in reach))
    entities = set().union(*(s.entities for s in reach))
    words = clause.content - clause.entities
    f: dict[str, float] = {}
    forms = restated(clause.numbers)
    found = len(covered(words, content)) + len(clause.entities & entities)
    found += sum(1 for v in clause.numbers if forms[v] & set(sent.numbers))
    total = len(words) + len(clause.entities) + len(clause.numbers)
    f["clause_coverage"] = found / total if total else 1.0
    f["number_absent"] = sum(1 for v in clause.numbers if not forms[v] & ctx.numbers)
    # A number may come from another sentence about another name the clause mentions ("Basic is
    # cheaper than Plus, at $12 versus $20": $20 is in the sentence about Plus).
    linked = set(sent.numbers).union(
        *(set(o.numbers) for o in ctx.slots if (o.entities - sent.entities) & (clause.entities | claim_entities))
    )
    f["number_misplaced"] = sum(1 for v in clause.numbers if forms[v] & ctx.numbers and not forms[v] & linked)
    f["number_misplaced"] += _numbers_rebound(clause, sent)
    f["unit_mismatch"] = sum(
        1
        for value, units in clause.numbers.items()
        if value in sent.numbers
        and None not in units
        and None not in sent.numbers[value]
        and not units & sent.numbers[value]
    )
    f["date_mismatch"] = len(clause.dates - sent.dates)
    sent_words = {t.lower for t in _tokens(sent.text)}
    # A name missing from the aligned sentence is misplaced when that sentence names someone else
    # where the claim names it ("Tomas Berg manages Lisbon" against "Ana Ribeiro manages Lisbon");
    # when it names no one, the name may come from a neighbour ("Support reproduced the bug").
    rivals = sent.entities - clause.entities
    nearby = sent_words | (
        {t.lower for j in ctx.neighbours[best] for t in _tokens(ctx.sentences[j])} if not rivals else set()
    )
    f["entity_absent"] = len(clause.entities - ctx.words)
    f["entity_misplaced"] = (
        len((clause.entities - nearby) & ctx.words)
        or _subject_misplaced(clause, ctx)
        or _noun_subject_misplaced(clause, ctx)
    )
    # Or in the sentence, but not in the clause of it that says the rest, which names another instead:
    # "left our Cork depot" against "left our Dublin depot on Tuesday and arrived at the Cork sorting centre".
    part = max(ctx.clauses[best], key=lambda c: _overlap(clause, c))
    if not f["entity_misplaced"] and len(ctx.clauses[best]) > 1 and part.entities - clause.entities:
        rest = words - clause.entities
        if len(covered(rest, part.content)) >= max(2, len(rest) // 2):
            f["entity_misplaced"] = len(clause.entities - part.entities)
    f["words_misplaced"] = len((words - covered(words, content)) & ctx.content)
    # Polarity, opposites and roles are compared with the clause of that sentence the claim matches
    # best: "It has not been tested in adults, and children should not receive it" holds two negations.
    # Opposites are looked for in every clause of it, each with its own negation ("revenue of $4.2
    # million for the quarter, up 12%": "up" is in the second clause).
    part = max(ctx.clauses[best], key=lambda c: _overlap(clause, c))
    # Flipped only when no clause of the sentence that shares a word with the claim has its polarity
    # ("the soup has no dairy" against "made with vegetable stock and contains no dairy").
    sharing = [c for c in ctx.clauses[best] if covered(words, c.content)] or [part]
    # A clause split from its negation ("Don't drink alcohol | while on metronidazole") takes the claim's.
    negatives = {clause.negative, clause.negative if claim_negative is None else claim_negative}
    flipped = all(c.negative not in negatives for c in sharing)
    # Each scale of the claim is compared with the clause of the sentence that says the rest of it
    # when that clause uses the scale, else with every clause: "rises in the eastern hills" conflicts with
    # "rises in the western hills and flows east"; "to the west ... eastward" does not.
    held = {
        k: {part.scales[k]} if k in part.scales else {c.scales[k] for c in ctx.clauses[best] if k in c.scales}
        for k in clause.scales
    }
    agreeing = {k for k, v in clause.scales.items() if held[k] and (not v or held[k] & {v, 0})}
    scale_agree = bool(agreeing)
    conflict = any(v and -v in held[k] and k not in agreeing for k, v in clause.scales.items())
    # A WordNet opposite contradicts at equal polarity and agrees across a negation ("not enabled" /
    # "disabled"); not for a word the sentence itself uses, nor one whose end of a scale it holds.
    settled = {_stem(t.lower) for t in _tokens(clause.text) if _SCALES_LEXICON.get(t.lower, ("",))[0] in agreeing}
    for c in ctx.clauses[best]:
        if opposed(words - sent.content - settled, c.content - c.entities - words):
            conflict, scale_agree = (False, True) if clause.negated != c.negated else (True, scale_agree)
    f["polarity_flip"] = float(flipped and not scale_agree and not conflict)
    # Roles are read in the clause that says the rest of the claim, or in the whole sentence when it
    # names more of the claim's names ("Jensen won the marathon, | two minutes ahead of Adair").
    in_part, in_sent = (len(set(_orders(x)) & set(_orders(clause))) for x in (part, sent))
    by_clause = [e for c in ctx.clauses[best] for e in _orders(c)]
    pivoted, swapped = _roles(clause, part) if in_part >= 2 and in_part >= in_sent else _roles(clause, sent, by_clause)
    if conflict and swapped:
        conflict, pivoted = False, 0  # "United lost to Rovers" = "Rovers beat United": both flips cancel
    f["scale_conflict"] = float(conflict or _compared(clause, ctx) < 0)
    f["role_swap"] = float(pivoted > 0)
    return f, best


def claim_features(
    claim: str, ctx: _ContextIndex, cosine: float, coverage: float
) -> tuple[list[float], list[dict[str, object]]]:
    """The feature vector (in `FEATURES` order) of one claim against indexed contexts.

    Args:
        claim: The claim.
        ctx: `index_contexts` of the contexts.
        cosine: The claim's best embedding cosine to a context sentence or adjacent pair.
        coverage: The share of its content words in that best passage.

    Returns:
        The features, and per clause its aligned sentence and non-zero slot checks (the evidence).
    """
    whole = analyse(claim, ctx.names)
    words = whole.content
    values: dict[str, float] = {"relatedness": max(cosine, coverage)}
    found = covered(words, ctx.content)
    values["coverage_context"] = len(found) / len(words) if words else 1.0
    values["novel_words"] = math.log1p(len(words - found - whole.entities))
    evidence: list[dict[str, object]] = []
    per_clause: list[dict[str, float]] = []
    if not ctx.sentences:
        # Nothing to rest on: every word, number and name of the claim is absent.
        values.update(dict.fromkeys(FEATURES[3:], 0.0))
        values["number_absent"], values["entity_absent"] = float(len(whole.numbers)), float(len(whole.entities))
        values["clause_coverage"] = 0.0 if words or whole.numbers else 1.0
        return [float(values[name]) for name in FEATURES], evidence
    for text in split_clauses(claim):
        clause = analyse(text, ctx.names)
        if not (clause.content or clause.numbers or clause.dates):
            continue
        f, best = _clause_features(clause, ctx, frozenset(whole.entities), whole.negative)
        per_clause.append(f)
        checks = {k: v for k, v in f.items() if v and k != "clause_coverage"}
        evidence.append(
            {"clause": text, "sentence": ctx.sentences[best], "coverage": round(f["clause_coverage"], 3), **checks}
        )
    for name in FEATURES[3:]:
        pick = min if name == "clause_coverage" else max
        values[name] = pick((f[name] for f in per_clause), default=1.0 if name == "clause_coverage" else 0.0)
    return [float(values[name]) for name in FEATURES], evidence
