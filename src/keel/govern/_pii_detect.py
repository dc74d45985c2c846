"""Find personal data and secrets in text, as typed character spans (`_pii_redact` rewrites text from them).

`PiiDetector` is configured once (types, phone regions) and reused over millions of texts: each type is
found from cheap anchors (an "@", a run of digits, a key prefix) and confirmed by a checksum, a validator
or phonenumbers. Spans carry type and offsets, never the value. Knows
nothing of records, Arrow batches or pipeline steps: the curation engine wraps it.
"""

from __future__ import annotations

import ipaddress
import math
import re
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, partial
from itertools import accumulate
from typing import TYPE_CHECKING, Any, AnyStr, Literal

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.govern import _pii_patterns as pat
from keel.govern._pii_people import PeopleFinder

if TYPE_CHECKING:
    from phonenumbers import PhoneMetadata

    from keel.govern._pii_presidio import PresidioFinder

__all__ = [
    "DEFAULT_REGIONS",
    "DEFAULT_TYPES",
    "PEOPLE_TYPES",
    "PhoneLeniency",
    "PiiDetector",
    "PiiEngine",
    "PiiSpan",
    "PiiType",
]

DEFAULT_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU", "CA", "BR", "JP")

PhoneLeniency = Literal["possible", "valid", "strict_grouping", "exact_grouping"]
# Who finds names and places: Keel's own classifier, or Presidio over an installed spaCy model (`_pii_presidio`).
PiiEngine = Literal["keel", "presidio"]


class PiiType(StrEnum):
    """What a span holds."""

    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    US_SSN = "us_ssn"
    SECRET = "secret"
    URL_CREDENTIALS = "url_credentials"
    # Found by `_pii_people` (a name classifier and cue-anchored patterns); opt-in: see `DEFAULT_TYPES`.
    PERSON = "person"
    ADDRESS = "address"
    DATE_OF_BIRTH = "date_of_birth"
    ID_DOCUMENT = "id_document"


# What `PiiDetector()` looks for when no types are given: the structured types, validated by checksums and
# patterns at 100+ MB/s. Names, addresses, dates of birth and document numbers run at ~2.4 MB per CPU-second
# on documentation text (benchmarks/pii_people.py), so they are asked for by name.
PEOPLE_TYPES: tuple[PiiType, ...] = (PiiType.PERSON, PiiType.ADDRESS, PiiType.DATE_OF_BIRTH, PiiType.ID_DOCUMENT)
DEFAULT_TYPES: tuple[PiiType, ...] = tuple(t for t in PiiType if t not in PEOPLE_TYPES)


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One finding: its type and `text[start:end]` position; `detail` names the kind of secret or card brand.

    The value itself is never stored, so spans can be logged and persisted without leaking it.
    """

    type: PiiType
    start: int
    end: int
    detail: str | None = None


# Overlaps are settled by specificity first: checksum- or prefix-validated findings beat pattern-only ones,
# and phone numbers (the loosest) lose to anything. Ties go to the longer span, then the earlier one.
_PRIORITY: dict[PiiType, int] = {
    PiiType.SECRET: 8,
    PiiType.URL_CREDENTIALS: 7,
    PiiType.CREDIT_CARD: 6,
    PiiType.IBAN: 5,
    PiiType.US_SSN: 4,
    PiiType.EMAIL: 3,
    PiiType.IPV6: 2,
    PiiType.IPV4: 1,
    PiiType.ID_DOCUMENT: 4,
    PiiType.DATE_OF_BIRTH: 2,
    PiiType.ADDRESS: 1,
    PiiType.PERSON: 0,
    PiiType.PHONE: 0,
}

# A numeric run found by `NUMERIC_RUN`: start, end and how many digits it holds.
Run = tuple[int, int, int]
Finder = Callable[["_Scan"], list[PiiSpan]]
# Texts are searched joined by NUL, which no pattern matches, so no finding spans two texts.
_SEPARATOR = "\x00"
# Batches of at least this many characters are screened first (`PiiDetector._screen`): converting and
# compiling cost ~0.3 ms a call, what the 20 prefix passes it saves cost on ~20 KB (measured).
_SCREEN_MIN_CHARS = 1 << 16
# Lookaheads at `endpos` would see the end of the string; letting the search run a few characters past a
# run keeps fences like (?!\w) honest without letting a match grow (runs are maximal).
_PAST_RUN = 4


@dataclass(frozen=True, slots=True)
class _Scan:
    """One search: the text (texts joined), its numeric runs, and the same text as one byte per character.

    `latin` is the text encoded as Latin-1 with every other character as "?", so byte i is character i:
    bytes.lower() and bytes.translate() on it run at 300+ MB/s where str.lower() on non-Latin text and
    regex scans over prose manage 40-80.
    """

    text: str
    runs: list[Run]
    latin: bytes
    # (start, end) of the texts that may hold a secret (`pat.SECRET_OR_SSN_SCREEN`), or None: all of `text` may.
    screened: list[tuple[int, int]] | None = None


@dataclass(frozen=True, slots=True)
class _Compiled:
    numeric_run: re.Pattern[str]
    email_domain: re.Pattern[str]
    url_credentials: re.Pattern[str]
    card: re.Pattern[str]
    iban: re.Pattern[str]
    ipv4: re.Pattern[str]
    version_context: re.Pattern[str]
    section_heading_before: re.Pattern[str]
    section_heading_after: re.Pattern[str]
    section_reference: re.Pattern[str]
    address_context: re.Pattern[str]
    address_before: re.Pattern[str]
    address_after: re.Pattern[str]
    ipv6: re.Pattern[str]
    ipv6_anchor: re.Pattern[str]
    ssn: re.Pattern[str]
    secrets: dict[bytes, list[tuple[str, re.Pattern[str]]]]
    aws_secret_after: re.Pattern[str]
    assignment: re.Pattern[str]
    credential_words: tuple[tuple[bytes, tuple[bytes, ...]], ...]
    byte_classes: bytes  # a bytes.translate table: A-Z to "A", 0-9 to "0", anything else to "."


@cache
def _compiled() -> _Compiled:
    """Compile every pattern once per process, on first use rather than at import."""
    secrets: dict[bytes, list[tuple[str, re.Pattern[str]]]] = {}
    for detail, prefixes, source in pat.SECRET_PATTERNS:
        compiled = re.compile(source)
        for prefix in prefixes:
            secrets.setdefault(prefix.encode(), []).append((detail, compiled))
    return _Compiled(
        numeric_run=re.compile(pat.NUMERIC_RUN),
        email_domain=re.compile(pat.EMAIL_DOMAIN),
        url_credentials=re.compile(pat.URL_CREDENTIALS),
        card=re.compile(pat.CARD),
        iban=re.compile(pat.IBAN),
        ipv4=re.compile(pat.IPV4),
        version_context=re.compile(pat.VERSION_CONTEXT),
        section_heading_before=re.compile(pat.SECTION_HEADING_BEFORE),
        section_heading_after=re.compile(pat.SECTION_HEADING_AFTER),
        section_reference=re.compile(pat.SECTION_REFERENCE),
        address_context=re.compile(pat.ADDRESS_CONTEXT),
        address_before=re.compile(pat.ADDRESS_MARKS_BEFORE),
        address_after=re.compile(pat.ADDRESS_MARKS_AFTER),
        ipv6=re.compile(pat.IPV6),
        ipv6_anchor=re.compile(pat.IPV6_ANCHOR),
        ssn=re.compile(pat.SSN),
        secrets=secrets,
        aws_secret_after=re.compile(pat.AWS_SECRET_AFTER),
        assignment=re.compile(pat.ASSIGNMENT),
        credential_words=tuple(
            (stem.encode(), tuple(w.encode() for w in words)) for stem, words in pat.CREDENTIAL_WORDS.items()
        ),
        byte_classes=bytes(65 if 65 <= i <= 90 else 48 if 48 <= i <= 57 else 46 for i in range(256)),
    )


def _numeric_runs(c: _Compiled, text: str) -> list[Run]:
    """Stretches of digits and separators long enough to hold an IPv4 address or more, with digit counts."""
    runs = []
    for m in c.numeric_run.finditer(text):
        digits = sum(map(str.isdigit, m.group()))
        if digits >= 4:
            runs.append((m.start(), m.end(), digits))
    return runs


def _find_email(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text = scan.text
    spans = []
    for at in _occurrences(text, "@"):
        start = at
        while start > 0 and at - start <= 64 and _is_local_char(text[start - 1]):
            start -= 1
        while start < at and text[start] == ".":  # a local part cannot start with a dot
            start += 1
        if start == at or at - start > 64 or text[at - 1] == "." or (start > 0 and text[start - 1] == "@"):
            continue
        m = c.email_domain.match(text, at + 1)
        if m is not None and m.group().rsplit(".", 1)[-1].lower() not in pat.EMAIL_FILE_EXTENSIONS:
            spans.append(PiiSpan(PiiType.EMAIL, start, m.end()))
    return spans


def _is_local_char(ch: str) -> bool:
    return ch in pat.EMAIL_LOCAL_CHARS or (ch > "\x7f" and ch.isalnum())


def _find_url_credentials(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text = scan.text
    spans = []
    for sep in _occurrences(text, "://"):
        if sep > 0 and text[sep - 1].isalnum() and (m := c.url_credentials.match(text, sep + 3)) is not None:
            spans.append(PiiSpan(PiiType.URL_CREDENTIALS, m.start("cred"), m.end("cred")))
    return spans


def _find_card(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text, runs = scan.text, scan.runs
    spans = []
    for start, end, digits in runs:
        if digits < 13:
            continue
        for m in c.card.finditer(text, start, end + _PAST_RUN):
            raw = m.group()
            number = raw.replace(" ", "").replace("-", "")
            brand = pat.card_brand(number)
            if brand is None and m.group("s1") and len(number) > 16:
                # "4111 1111 1111 1111 123": the regex took a trailing group that may not belong to the card.
                brand, raw = pat.card_brand(number[:16]), raw[:19]
            if brand is not None:
                spans.append(PiiSpan(PiiType.CREDIT_CARD, m.start(), m.start() + len(raw), brand))
    return spans


def _find_iban(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text = scan.text
    spans: list[PiiSpan] = []
    # "Two capitals, two digits", where an IBAN can start, read "AA00" in the byte classes: a regex scan
    # starting with [A-Z] tries a match at every capital of ordinary prose and ran at 43 MB/s, translate +
    # find at 200+ MB/s.
    for at in _occurrences(scan.latin.translate(c.byte_classes), b"AA00"):
        if (spans and at < spans[-1].end) or (m := c.iban.match(text, at)) is None:
            continue
        raw = m.group()
        # The regex is greedy over upper-case groups ("... 3000 EUR"); the country's length says where it ends.
        end = _nth_non_space(raw, pat.IBAN_LENGTHS.get(raw[:2], 99))
        if end is not None and (end == len(raw) or raw[end] == " ") and pat.iban_valid(raw[:end].replace(" ", "")):
            spans.append(PiiSpan(PiiType.IBAN, at, at + end))
    return spans


def _nth_non_space(raw: str, n: int) -> int | None:
    """The offset just past the `n`th non-space character of `raw`, or None if it has fewer."""
    seen = 0
    for i, ch in enumerate(raw):
        if ch != " ":
            seen += 1
            if seen == n:
                return i + 1
    return None


def _find_ipv4(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text, runs = scan.text, scan.runs
    spans = []
    for start, end, _ in runs:
        if text.count(".", start, end) < 3:
            continue
        for m in c.ipv4.finditer(text, start, end + _PAST_RUN):
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:  # an octet over 255 or with a leading zero: a version or section number
                continue
            if _is_address(c, text, m.start(), m.end()):
                spans.append(PiiSpan(PiiType.IPV4, m.start(), m.end()))
    return spans


def _is_address(c: _Compiled, text: str, start: int, end: int) -> bool:
    """Whether the valid dotted quad text[start:end] is an address rather than a version or section number.

    Measured on python3-doc's pages (benchmarks/pii.py --docs): of 323 dotted quads found before this check,
    ~60 were section numbers ("8.6.4.3. Literal Patterns") and versions ("zlib 1.2.0.1", "Firefox/2.0.0.11").
    """
    # Windows never reach into the neighbouring texts of `detect_many` (joined by NUL).
    floor = text.rfind(_SEPARATOR, max(0, start - 40), start) + 1 or max(0, start - 40)
    ceiling = text.find(_SEPARATOR, end, end + 25)
    ceiling = min(len(text), end + 25) if ceiling < 0 else ceiling
    if c.version_context.search(text, max(floor, start - 12), start) is not None:
        return False
    if c.section_heading_after.match(text, end, ceiling) and c.section_heading_before.search(
        text, max(floor, start - 16), start
    ):
        return False  # a heading's number: "\n8.6.4.3. Literal Patterns"
    if c.section_reference.search(text, max(floor, start - 16), start):
        return False  # "section 6.4.4.2", "§ 1.2.3.4"
    if c.address_before.search(text, max(floor, start - 3), start) or c.address_after.match(text, end, ceiling):
        return True  # "http://10.0.0.1/", "admin@10.0.0.1", "10.0.0.1:22", "10.0.0.0/8"
    if floor < start and end < ceiling and text[start - 1] == text[end] and text[end] in "'\"":
        return True  # a quoted value of its own: '7.10.0.5'
    if c.address_context.search(text, floor, ceiling):
        return True
    return max(int(octet) for octet in text[start:end].split(".")) >= _SMALL_OCTET


def _line_end(text: str, pos: int) -> int:
    """Where the line holding `pos` ends: the next newline or text separator (NUL), or the text's end."""
    ends = [i for i in (text.find("\n", pos), text.find(_SEPARATOR, pos)) if i >= 0]
    return min(ends, default=len(text))


# A dotted quad of small numbers only, without an address's words or marks, is a version or a section number.
_SMALL_OCTET = 32


def _find_ipv6(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text = scan.text
    if "::" not in text and text.count(":") < 7:
        return []
    spans: list[PiiSpan] = []
    # Searched from anchors ("::" or ":h:") rather than over the whole text: reStructuredText and C++ are
    # full of "::", and a pattern starting with a lookbehind makes `re` try every position.
    for anchor in c.ipv6_anchor.finditer(text):
        if spans and anchor.start() < spans[-1].end:
            continue
        start = anchor.start()
        while start > 0 and text[start - 1] in _HEX_OR_COLON:
            start -= 1
        m = c.ipv6.match(text, start)
        if m is None or m.end() <= anchor.start():
            continue
        raw = m.group()
        groups = [g for g in raw.split(":") if g]
        # "1::2" and "::1" are as often Python slices as addresses; real ones carry more hex than that.
        if len(groups) < 2 or sum(len(g) for g in groups) < 4:
            continue
        try:
            ipaddress.IPv6Address(raw)
        except ValueError:  # times (12:30:45), MAC addresses, C++ scopes
            continue
        spans.append(PiiSpan(PiiType.IPV6, m.start(), m.end()))
    return spans


_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")


def _find_ssn(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text, runs = scan.text, scan.runs
    spans = []
    for start, end, digits in runs:
        if digits < 9 or text.count("-", start, end) < 2:
            continue
        for m in c.ssn.finditer(text, start, end + _PAST_RUN):
            if pat.ssn_valid(m.group("area"), m.group("group"), m.group("serial")):
                spans.append(PiiSpan(PiiType.US_SSN, m.start(), m.end()))
    return spans


def _find_secret(c: _Compiled, scan: _Scan) -> list[PiiSpan]:
    text = scan.text
    # Each prefix costs a pass over the text (~1.4 GB/s, 20 of them): only the screened texts are searched.
    ranges = [(0, len(text))] if scan.screened is None else scan.screened
    if not ranges:
        return []
    spans = []
    for prefix, patterns in c.secrets.items():
        for at in (at for lo, hi in ranges for at in _occurrences(scan.latin, prefix, lo, hi)):
            for detail, pattern in patterns:
                if (m := pattern.match(text, at)) is not None:
                    spans.append(PiiSpan(PiiType.SECRET, m.start(), m.end(), detail))
                    break
    lowered = scan.latin.lower()  # ASCII letters lowered, offsets unchanged
    for at in (at for lo, hi in ranges for at in _occurrences(lowered, b"aws", lo, hi)):
        if (aws := c.aws_secret_after.match(text, at + 3)) is not None:
            spans.append(PiiSpan(PiiType.SECRET, aws.start("value"), aws.end("value"), "aws_secret_access_key"))
    spans.extend(_assigned_secrets(c, text, lowered, ranges))
    return spans


def _assigned_secrets(c: _Compiled, text: str, lowered: bytes, ranges: list[tuple[int, int]]) -> list[PiiSpan]:
    """Values assigned to a credential word (`api_key = ...`, `Bearer ...`) that look random enough."""
    spans = []
    for stem, words in c.credential_words:
        for at in (at for lo, hi in ranges for at in _occurrences(lowered, stem, lo, hi)):
            word = next((w for w in words if lowered.startswith(w, at)), None)
            if word is None or (m := c.assignment.match(text, at + len(word))) is None:
                continue
            group = "value" if m.group("value") else "bearer"
            value = m.group(group).rstrip(".,;")  # a sentence may end right after the value
            if (group == "value" or word == b"bearer") and _looks_random(value):
                spans.append(PiiSpan(PiiType.SECRET, m.start(group), m.start(group) + len(value), "assignment"))
    return spans


def _occurrences(text: AnyStr, word: AnyStr, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of the non-overlapping occurrences of `word` in `text[start:end]`."""
    found = []
    end = len(text) if end is None else end
    at = text.find(word, start, end)
    while at >= 0:
        found.append(at)
        at = text.find(word, at + len(word), end)
    return found


def _looks_random(value: str) -> bool:
    """Whether an assigned value looks like a credential rather than a word, a path or an expression."""
    if len(value) < 8 or value[0] in "$%{<" or "://" in value or not any(ch.isalpha() for ch in value):
        return False
    if not any(ch.isdigit() for ch in value):
        # Letters only: a random key flips case about every other letter, camelCase names (and words) rarely.
        pairs = zip(value, value[1:], strict=False)
        flips = sum(a.isupper() != b.isupper() for a, b in pairs if a.isalpha() and b.isalpha())
        return len(value) >= 20 and flips >= 0.3 * len(value)
    # Entropy alone lets "configuration" through (3.2 bits); real keys and passwords mix classes. The bar
    # scales with length because 8 distinct characters can never carry more than 3 bits each.
    return pat.shannon_entropy(value) >= min(3.5, 0.75 * math.log2(len(value)))


@dataclass(frozen=True, slots=True)
class _RegionCheck:
    """A region's number patterns, for a cheap test that must pass before phonenumbers' matcher is asked."""

    region: str
    country_code: str
    number: str  # compiled on first use (by _pattern): ~35 ms a region, which texts without numbers never pay
    national_prefix: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None

    def may_match(self, digits: str, country_codes: Collection[str]) -> bool:
        """Whether `digits` could be a valid number of this region in any way a matcher would parse it."""
        variants = [digits]
        if self.national_prefix is not None and (m := self.national_prefix.match(digits)) and m.end():
            variants.append(digits[m.end() :])
        if digits.startswith(self.country_code):
            variants.append(digits[len(self.country_code) :])
        if self.international_prefix is not None and (m := self.international_prefix.match(digits)):
            rest = digits[m.end() :]
            if any(rest[:n] in country_codes for n in (1, 2, 3)):
                return True
        number = _pattern(self.number)
        return any(number.fullmatch(v) for v in variants)


_NUMBER_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number", "voip",
                 "pager", "uan", "voicemail")  # fmt: skip


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _region_check(metas: Sequence[PhoneMetadata]) -> _RegionCheck:
    """The check for regions sharing one country code; the first one's metadata supplies the prefixes."""
    # The union of the per-type patterns is what is_valid_number tests; the general pattern is far looser
    # (for DE it admits almost any run of digits), so it would send most candidates on to the matcher.
    patterns = [
        desc.national_number_pattern
        for meta in metas
        for name in _NUMBER_TYPES
        if (desc := getattr(meta, name, None)) is not None and desc.national_number_pattern
    ]
    first = metas[0]
    return _RegionCheck(
        region=str(first.id),
        country_code=str(first.country_code),
        number="|".join(f"(?:{p})" for p in patterns) or r"\d{4,17}",
        national_prefix=re.compile(first.national_prefix_for_parsing) if first.national_prefix_for_parsing else None,
        international_prefix=re.compile(first.international_prefix) if first.international_prefix else None,
    )


# (start, end, written as bare digits) of each number phonenumbers found in one candidate.
_Hits = tuple[tuple[int, int, bool], ...]


class _PhoneFinder:
    """Phone numbers: a digit-run regex finds candidates, phonenumbers' `PhoneNumberMatcher` decides.

    The matcher costs 200-400 µs per call and region, so it never sees whole texts: only candidates with
    7+ digits, and only for regions whose number patterns the digits fit (regions sharing a country code,
    like US and CA, are tried once). Results are cached per candidate string.
    """

    _CACHE_SIZE = 8192

    def __init__(self, regions: Sequence[str], leniency: PhoneLeniency) -> None:
        import phonenumbers  # imported here: 35 ms that detectors without phones should not pay

        self._pn = phonenumbers
        unknown = sorted({r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS})
        if unknown:
            raise InputError(
                f"expected ISO 3166 region codes that phonenumbers supports (e.g. US, GB, DE), got {unknown}",
                hint="fix or drop them in phone_regions",
            )
        self._leniency: int = getattr(phonenumbers.Leniency, leniency.upper())
        # One check per country code: US and CA share +1, and a matcher run for US accepts Canadian
        # numbers too, but each region's metadata lists only its own area codes, so their patterns are joined.
        by_code: dict[int, list[PhoneMetadata]] = {}
        for region in regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if meta is not None and meta.country_code is not None:
                by_code.setdefault(meta.country_code, []).append(meta)
        self._checks = [_region_check(metas) for metas in by_code.values()]
        self._country_codes = frozenset(str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
        self._candidate = re.compile(pat.PHONE_CANDIDATE)
        self._context = re.compile(pat.PHONE_CONTEXT)
        self._not_a_phone = re.compile(pat.NOT_A_PHONE)
        self._not_in_a_phone = re.compile(pat.NOT_IN_A_PHONE)
        self._numbers_line = re.compile(pat.NUMBERS_LINE)
        self._version = re.compile(pat.VERSION_CONTEXT)
        self._digit_group = re.compile(r"\d+")
        self._code_before = re.compile(pat.CODE_BEFORE)
        self._code_after = re.compile(pat.CODE_AFTER)
        self._cache: dict[str, _Hits] = {}

    def __call__(self, text: str, runs: list[Run], taken: Sequence[PiiSpan], starts: Sequence[int]) -> list[PiiSpan]:
        """Phone numbers in `text` (texts joined, each beginning at one of `starts`).

        Candidates inside a span already `taken` are skipped: phones rank last when overlaps are settled,
        so they could never survive, and skipping them saves the matcher call.
        """
        covers = sorted((t.start, t.end) for t in taken)
        cover_starts = [start for start, _ in covers]
        spans = []
        for run_start, run_end, digits in runs:
            if digits < 7:
                continue
            for m in self._candidate.finditer(text, run_start, run_end + _PAST_RUN):
                cand = m.group()
                if sum(map(str.isdigit, cand)) < 7 or self._not_a_phone.fullmatch(cand.strip("()+")):
                    continue
                floor = starts[bisect_right(starts, m.start()) - 1]
                if "." in cand and self._version.search(text, max(floor, m.start() - 12), m.start()) is not None:
                    continue  # "Version: 6.0.12.20261113" holds no phone number, whatever the matcher finds in it
                i = bisect_right(cover_starts, m.start()) - 1
                if i >= 0 and m.end() <= covers[i][1]:
                    continue
                for start, end, bare in self._hits(cand):
                    start, end = start + m.start(), end + m.start()
                    if self._plausible(text, start, end, bare, floor):
                        spans.append(PiiSpan(PiiType.PHONE, start, end))
        return spans

    def _hits(self, cand: str) -> _Hits:
        """The numbers in a candidate, or else in it minus a one- or two-digit group at either end.

        The matcher does not look inside "0121 234 4208 16" (a number, then the hour of "16:25"). Only
        such short groups are dropped: carving numbers out of longer runs of 3-4 digit groups (tracking
        numbers, card-like ids) was measured to find phones that are not there.
        """
        hits = self._cached_match(cand)
        if hits or self._not_in_a_phone.search(cand):
            return hits
        groups = [g.span() for g in self._digit_group.finditer(cand)]
        if len(groups) < 3:
            return ()
        for start, end, dropped in ((0, groups[-2][1], groups[-1]), (groups[1][0], len(cand), groups[0])):
            sub = cand[start:end]
            if dropped[1] - dropped[0] <= 2 and sum(map(str.isdigit, sub)) >= 7 and (hits := self._cached_match(sub)):
                return tuple((s + start, e + start, bare) for s, e, bare in hits)
        return ()

    def _plausible(self, text: str, start: int, end: int, bare: bool, floor: int) -> bool:
        """Context checks phonenumbers cannot make: what stands before and after the number (from `floor` on)."""
        # A bare run of digits is an order number as often as a phone number: it needs a phone word.
        context = self._context.search(text, max(floor, start - 40), start) is not None
        if bare and not context:
            return False
        if not context and self._in_number_column(text, start, end, floor):
            return False  # "11 39916800" in a program's output: "1 1\n11 39916800\n21 5109094217"
        # Digits next to a code like "FR31" or "89BS" are part of that code (an IBAN, a reference).
        before = self._code_before.search(text, max(floor, start - 8), start)
        return before is None and self._code_after.match(text, end) is None

    def _in_number_column(self, text: str, start: int, end: int, floor: int) -> bool:
        """Whether text[start:end] sits on a line of numbers only, next to another line of numbers only."""
        first = max(text.rfind("\n", floor, start) + 1, floor)
        last = _line_end(text, end)
        if not self._numbers_line.fullmatch(text, first, last):
            return False
        if first > floor:  # the line before
            before = max(text.rfind("\n", floor, first - 1) + 1, floor)
            if self._numbers_line.fullmatch(text, before, first - 1):
                return True
        if last < len(text) and text[last] == "\n":  # the line after
            after = _line_end(text, last + 1)
            return after > last + 1 and self._numbers_line.fullmatch(text, last + 1, after) is not None
        return False

    def _cached_match(self, cand: str) -> _Hits:
        found = self._cache.get(cand)
        if found is None:
            found = () if self._not_in_a_phone.search(cand) else self._match(cand)
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            self._cache[cand] = found
        return found

    def _match(self, cand: str) -> _Hits:
        digits = "".join(ch for ch in cand if ch.isdigit())
        if cand.lstrip("(").startswith("+"):
            regions = [self._checks[0].region if self._checks else "ZZ"]  # the region plays no part after "+"
        else:
            regions = [c.region for c in self._checks if c.may_match(digits, self._country_codes)]
        best: _Hits = ()
        best_digits = 0
        # Regions can disagree (IT reads "081234" out of an Indian "081234 56789"): keep the reading that
        # covers the most digits, and stop as soon as one covers them all.
        for region in regions:
            hits = tuple(
                (pm.start, pm.end, pm.raw_string.isdigit())
                for pm in self._pn.PhoneNumberMatcher(cand, region, leniency=self._leniency)
                if not self._not_a_phone.fullmatch(pm.raw_string.strip("()+"))
            )
            covered = sum(sum(map(str.isdigit, cand[s:e])) for s, e, _ in hits)
            if covered > best_digits:
                best, best_digits = hits, covered
            if covered == len(digits):
                break
        return best


_FINDERS: dict[PiiType, Callable[[_Compiled, _Scan], list[PiiSpan]]] = {
    PiiType.EMAIL: _find_email,
    PiiType.URL_CREDENTIALS: _find_url_credentials,
    PiiType.CREDIT_CARD: _find_card,
    PiiType.IBAN: _find_iban,
    PiiType.IPV4: _find_ipv4,
    PiiType.IPV6: _find_ipv6,
    PiiType.US_SSN: _find_ssn,
    PiiType.SECRET: _find_secret,
}


class PiiDetector:
    """Finds personal data and secrets in text; build one, then call it on as many texts as you like.

    Overlapping findings are settled deterministically: the more specific type wins (secret, URL
    credentials, card, IBAN, SSN, e-mail, IPv6, IPv4, then phone), then the longer span, then the earlier.
    Dotted numbers right after a version word or a requirement operator ("v1.2.3.4", "version 10.0.0.1",
    "pkg>=1.2.0.0") are versions, and heading or section numbers ("8.6.4.3. Literal Patterns", "section
    6.4.4.2") are not addresses either. Another valid dotted quad is reported, loopback and private ranges
    included, when an address word ("host", "server", "login", "IP"...) or mark (a port, a prefix length,
    "://", "@", quotes) is near, or when one of its numbers is 32 or more: "zlib 1.2.0.1" is a version.
    Digit-based types look at ASCII digits only.

    Args:
        types: The `PiiType` values to look for; None means `DEFAULT_TYPES` (every type but the four found
            by `_pii_people`), "all" every type.
        phone_regions: Regions whose national-format numbers ("020 7946 0958") count as phones; numbers
            written with "+" and a country code are found whatever this says. A bare run of digits
            ("2125550187") counts only after a phone word ("call", "Tel.", "Telefon"...).
        phone_leniency: How sure phonenumbers must be. Measured on `benchmarks/pii.py --n 3000`, phone
            precision was 0.877 for "possible", 0.976 for "valid" and 0.998 for "strict_grouping" and
            "exact_grouping", recall 1.0 for all; "strict_grouping" is the default because libphonenumber
            warns that "exact_grouping" loses numbers outside +1.
        engine: Who finds `person` and `address`: `keel` (the built-in classifier and patterns) or `presidio`
            (Presidio's spaCy NER, when `presidio-analyzer` and an English spaCy pipeline are installed; never
            downloaded). Dates of birth and document numbers stay Keel's either way: Presidio has no
            date-of-birth entity and its document recognizers are US-only.

    Names, street addresses, dates of birth and identity-document numbers (`person`, `address`,
    `date_of_birth`, `id_document`) come from `_pii_people`: a name classifier over lexicon and context
    features and patterns anchored on a street type, a birth word or a document word. They are found only
    when asked for by name (see `DEFAULT_TYPES`); asking for `id_document` or `us_ssn` also finds SSNs written
    with spaces after an "SSN" word.

    Attributes:
        types: The types this detector looks for, in `PiiType` order.

    Raises:
        InputError: An unknown type, phone region, leniency or engine.
        ConfigError: `engine="presidio"` without Presidio or an English spaCy pipeline installed.

    Examples:
        >>> detector = PiiDetector(types=["email", "ipv4"])
        >>> detector.detect("mail ada@example.org from host 10.0.0.7")
        [PiiSpan(type=<PiiType.EMAIL: 'email'>, start=5, end=20, detail=None), \
PiiSpan(type=<PiiType.IPV4: 'ipv4'>, start=31, end=39, detail=None)]
    """

    def __init__(
        self,
        types: Collection[str] | None = None,
        phone_regions: Sequence[str] = DEFAULT_REGIONS,
        *,
        phone_leniency: PhoneLeniency = "strict_grouping",
        engine: PiiEngine = "keel",
    ) -> None:
        valid = [t.value for t in PiiType]
        if types == "all":
            types = valid
        if isinstance(types, str):
            types = [types]
        wanted = list(DEFAULT_TYPES) if types is None else [t for t in PiiType if t.value in set(types)]
        unknown = sorted(set(types or ()) - set(valid))
        if unknown:
            raise InputError(f"expected PII types among {valid}, got unknown {unknown}", hint="fix or drop them")
        if phone_leniency not in ("possible", "valid", "strict_grouping", "exact_grouping"):
            raise InputError(
                f"expected phone_leniency 'possible', 'valid', 'strict_grouping' or 'exact_grouping', "
                f"got {phone_leniency!r}"
            )
        self.types: tuple[PiiType, ...] = tuple(wanted)
        compiled = self._compiled = _compiled()
        self._numeric = bool({PiiType.PHONE, PiiType.CREDIT_CARD, PiiType.IPV4, PiiType.US_SSN} & set(wanted))
        self._latin = bool({PiiType.IBAN, PiiType.SECRET} & set(wanted))
        self._finders: list[Finder] = [partial(_FINDERS[t], compiled) for t in wanted if t in _FINDERS]
        self._phones: _PhoneFinder | None = None
        if PiiType.PHONE in wanted:
            self._phones = _PhoneFinder([r.upper() for r in phone_regions], phone_leniency)
        if engine not in ("keel", "presidio"):
            raise InputError(f"expected PII engine 'keel' or 'presidio', got {shown(engine)}")
        people = [t.value for t in wanted if t in PEOPLE_TYPES]
        if PiiType.US_SSN in wanted and "id_document" not in people:
            people.append("id_document")  # its pattern also finds SSNs written with spaces after an SSN word
        self._presidio: PresidioFinder | None = None
        if engine == "presidio":
            from keel.govern._pii_presidio import PRESIDIO_TYPES, PresidioFinder

            self._presidio = PresidioFinder(tuple(t for t in people if t in PRESIDIO_TYPES))
            people = [t for t in people if t not in PRESIDIO_TYPES]
        if "id_document" in people and PiiType.ID_DOCUMENT not in wanted:
            # asked for SSNs only: the finder's SSN pattern alone, not the document numbers it would drop
            people[people.index("id_document")] = "us_ssn"
        self.engine: PiiEngine = engine
        self._people: PeopleFinder | None = PeopleFinder(tuple(people)) if people else None

    def detect(self, text: str) -> list[PiiSpan]:
        """Every finding in `text`, sorted by start and never overlapping.

        Offsets index the `str` (code points), so `text[span.start:span.end]` is the finding.
        """
        return self._detect_joined(text, [0])[0]

    def detect_many(self, texts: Sequence[str], *, arrow: Any = None) -> list[list[PiiSpan]]:
        """`detect` for each text, in order, with the same results but in one pass over all of them.

        The texts are searched joined (by NUL, which no pattern matches), so the per-text cost of a call
        disappears: a batch of short clean texts costs what one long text does. The joined copy lives for
        the call, so pass batches (a record batch's worth), not a whole corpus.

        Args:
            texts: The texts.
            arrow: The same texts as an Arrow string array or chunked array, when the caller holds them so
                (a record batch's column): the batch screen then reads it instead of converting `texts`.
        """
        if len(texts) < 2:
            return [self.detect(text) for text in texts]
        starts = list(accumulate((len(t) + len(_SEPARATOR) for t in texts[:-1]), initial=0))
        joined = _SEPARATOR.join(texts)
        screened = self._screen(texts, starts, arrow) if len(joined) >= _SCREEN_MIN_CHARS else None
        return self._detect_joined(joined, starts, screened)

    def _screen(self, texts: Sequence[str], starts: list[int], arrow: Any = None) -> list[tuple[int, int]] | None:
        """(start, end) in the joined text of the texts that may hold a secret or a spaced SSN, or None: all may.

        One RE2 pass over the batch (`pat.SECRET_OR_SSN_SCREEN`, ~0.5 GB/s) instead of the secret finder's
        20 prefix passes and a lowered copy of every text for the SSN cue: on the real-text corpus of
        benchmarks/curation_full_recipe.py it flags 155 of 14,717 texts. Texts that cannot cross into Arrow
        are searched whole, as are batches too small to repay the pattern's compilation (`_SCREEN_MIN_CHARS`)
        and batches in a process that has not imported pyarrow.
        """
        if PiiType.SECRET not in self.types and not self._ssn_cue_only():
            return None
        if arrow is None and "pyarrow" not in sys.modules:
            return None  # importing pyarrow (~0.3 CPU-s) only for the screen would cost more than it saves
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            array = pa.array(texts, pa.large_string()) if arrow is None else arrow
        except (UnicodeEncodeError, pa.ArrowException):  # lone surrogates from a lossy decode upstream
            return None
        if len(array) != len(texts) or array.null_count:
            raise InputError(f"expected {len(texts)} texts without nulls as `arrow`, got {len(array)}")
        flagged = pc.indices_nonzero(pc.match_substring_regex(array, pat.SECRET_OR_SSN_SCREEN)).to_pylist()
        return [(starts[i], starts[i] + len(texts[i])) for i in flagged]

    def _ssn_cue_only(self) -> bool:
        """Whether `_pii_people` runs for nothing but SSNs after a cue word (the default types)."""
        return self._presidio is None and self._people is not None and self._people.types == {"us_ssn"}

    def _detect_joined(
        self, text: str, starts: list[int], screened: list[tuple[int, int]] | None = None
    ) -> list[list[PiiSpan]]:
        runs = _numeric_runs(self._compiled, text) if self._numeric else []
        latin = text.encode("latin-1", "replace") if self._latin else b""
        scan = _Scan(text, runs, latin, screened)
        spans: list[PiiSpan] = []
        for find in self._finders:
            spans.extend(find(scan))
        if self._phones is not None and runs:
            spans.extend(self._phones(text, runs, spans, starts))
        if self._people is not None or self._presidio is not None:
            spans.extend(self._people_spans(text, starts, screened if self._ssn_cue_only() else None))
        per_text: list[list[PiiSpan]] = [[] for _ in starts]
        i = 0
        for span in _resolve(spans):  # sorted by start
            while i + 1 < len(starts) and starts[i + 1] <= span.start:
                i += 1
            offset = starts[i]
            per_text[i].append(
                PiiSpan(span.type, span.start - offset, span.end - offset, span.detail) if offset else span
            )
        return per_text

    def _people_spans(
        self, text: str, starts: list[int], screened: list[tuple[int, int]] | None = None
    ) -> list[PiiSpan]:
        """What `_pii_people` finds in each joined text (run per text: its features look across words).

        With `screened` (the finder looks only for SSNs after a cue word), only those texts are searched.
        """
        finders = [f for f in (self._people, self._presidio) if f is not None]
        wanted = set(self.types)
        spans = []
        ends = [*(start - len(_SEPARATOR) for start in starts[1:]), len(text)]
        pieces = zip(starts, ends, strict=True) if screened is None else screened
        for offset, end_of_piece in pieces:  # not split(): a text may hold a NUL itself
            piece = text[offset:end_of_piece]
            for kind, start, end in (found for finder in finders for found in finder.find(piece)):
                if PiiType(kind) in wanted:
                    spans.append(PiiSpan(PiiType(kind), start + offset, end + offset))
        return spans


def _resolve(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Keep a non-overlapping subset, preferring specific types, then longer spans, then earlier ones."""
    if len(spans) < 2:
        return spans
    ranked = sorted(spans, key=lambda s: (-_PRIORITY[s.type], s.start - s.end, s.start))
    starts: list[int] = []
    kept: list[PiiSpan] = []
    for span in ranked:
        i = bisect_left(starts, span.start)
        if (i > 0 and kept[i - 1].end > span.start) or (i < len(kept) and kept[i].start < span.end):
            continue
        starts.insert(i, span.start)
        kept.insert(i, span)
    return kept
