"""Patterns and checksum validators behind `keel.govern._pii_detect`: regex sources, Luhn, IBAN mod 97, SSN rules.

Everything here is a pure function of a string or a constant; nothing is compiled at import time
(the detector compiles what it needs once, when it is built). It deliberately knows nothing about
spans, overlaps or redaction, which live in `_pii`.
"""

from __future__ import annotations

import math
import re
from collections import Counter

__all__ = [
    "ASSIGNMENT",
    "AWS_SECRET_AFTER",
    "CARD",
    "CODE_AFTER",
    "CODE_BEFORE",
    "CREDENTIAL_WORDS",
    "EMAIL_DOMAIN",
    "EMAIL_FILE_EXTENSIONS",
    "EMAIL_LOCAL_CHARS",
    "IBAN",
    "IBAN_LENGTHS",
    "IPV4",
    "IPV6",
    "IPV6_ANCHOR",
    "NOT_A_PHONE",
    "NOT_IN_A_PHONE",
    "NUMERIC_RUN",
    "PHONE_CANDIDATE",
    "PHONE_CONTEXT",
    "SECRET_OR_SSN_SCREEN",
    "SECRET_PATTERNS",
    "SSN",
    "URL_CREDENTIALS",
    "VERSION_CONTEXT",
    "card_brand",
    "iban_valid",
    "luhn_valid",
    "shannon_entropy",
    "ssn_valid",
]

# Digit-based types (card, SSN, IPv4, phone) are only looked for inside these runs: one scan over the text
# finds every stretch of 7+ digits and separators, so prose costs one pass instead of four.
NUMERIC_RUN = r"[+(0-9][0-9 .\-/()\t\u00a0+]{6,}"

# E-mail is found from each "@": the domain by this pattern, anchored right after it, the local part by
# walking back over EMAIL_LOCAL_CHARS (and non-ASCII letters). The domain is ASCII (or punycode) on purpose:
# admitting \w there turns code and file names into matches.
EMAIL_DOMAIN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9\-]{1,59})(?![\w\-@])"
)
EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# "icon@2x.png" is a retina asset name, not an address: these "TLDs" are file types.
EMAIL_FILE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "avif"})

# Anchored right after "://". The span is the userinfo only (`user:pass`), so a redacted URL still says
# where it pointed. "#" and "%" are allowed in the password because people paste them unencoded.
URL_CREDENTIALS = r"(?P<cred>[^\s:/?#@\[\]\"'<>\x00]{1,128}:[^\s/?@\"'<>\x00]{1,256})@[A-Za-z0-9\[]"

# Contiguous 13-19 digits, or the printed groupings 4-4-4-4(-1..3), 4-6-5 (Amex) and 4-6-4 (Diners), with one
# consistent separator. Never glued to a word or to "+" (an E.164 phone number: +4915123451564), and a
# grouped card is not carved out of a longer run of digit groups.
CARD = (
    r"(?<![\w\-+])"
    r"(?:\d{13,19}(?!\w)"
    r"|(?<!\d[ \-])(?:\d{4}(?P<s1>[ \-])\d{4}(?P=s1)\d{4}(?P=s1)\d{4}(?:(?P=s1)\d{1,3})?"
    r"|\d{4}(?P<s2>[ \-])\d{6}(?P=s2)\d{4,5})(?!\w|[ \-]\d{3}))"
)

# Upper-case country code, two check digits, then 11-30 characters in optional groups; the country's
# registered length cuts the match and mod 97 decides. Matched at the anchors `_pii` finds.
IBAN = r"(?<![\w\-])[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){11,30}(?!\w)"

# Four dotted decimals, not glued to a word (v1.2.3.4, build1.2.3.4) and not part of a longer dotted run
# (1.2.3.4.5); a trailing sentence full stop is allowed.
IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"
# A version word or a requirement operator right before dotted numbers makes them a version string, not
# an address or a phone number: "v1.2.3.4", "Version: 6.0.12.2026", "fasttext>=0.9.2.4".
VERSION_CONTEXT = r"(?i)(?:\b(?:version|ver\.?|release|rel\.?|build|firmware|v)|[<>=!~]=|[<>])\s*[:=#]?\s*$"
# Dotted quads that number sections: a heading ("8.6.4.3. Literal Patterns", at a line's start, the number
# closed by a full stop) or a reference ("section 6.4.4.2", "§ 1.2.3.4"), matched on the text before the quad.
SECTION_HEADING_BEFORE = r"(?:^|[\n\x00])[ \t]*$"
SECTION_HEADING_AFTER = r"\.[ \t]+\S"
SECTION_REFERENCE = (
    r"(?i)(?:\b(?:sections?|sec\.|chapters?|ch\.|clauses?|paragraphs?|para\.|figures?|fig\.|tables?|steps?"
    r"|articles?|appendix|parts?|items?|rules?|abschnitt|kapitel|chapitre|secci[oó]n|cap[ií]tulo)|§)\s*$"
)
# Words near a dotted quad that make it a network address in prose (before it, or just after it). Without
# one, and without an address's own marks (a port, a prefix length, "://", "@", quotes around it alone), a
# quad whose numbers are all small ("2.0.0.11", "1.2.3.4", "3.3.2.1") is read as a version or section number.
ADDRESS_CONTEXT = (
    r"(?i)\b(?:ip|ipv4|ips|ip-?adresse|address(?:es)?|addr|adresse|direcci[oó]n|indirizzo|hosts?|hostname|servers?"
    r"|serveur|servidor|gateway|router|subnet|netmask|mask|dns|nameserver|ping|proxy|firewall|vpn|client|peer"
    r"|login|logon|connect\w*|connexion|conexi[oó]n|verbindung|ssh|telnet|ftp|https?|listen\w*|bind|inet"
    r"|localhost|loopback|interface|network|lan|wan|port|blocked|allowed|denied|allowlist|blocklist|route)\b"
)
ADDRESS_MARKS_BEFORE = r"(?:://|@)$"
ADDRESS_MARKS_AFTER = r"(?::\d|/\d)"

# Candidate only: hex groups and colons (and a dotted IPv4 tail); `ipaddress` validates.
IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"

# Every IPv6 address worth reporting has "::" or three inner groups between colons; IPv6 is looked for
# from these anchors, which start with a colon so that `re` can skip ahead.
IPV6_ANCHOR = r":(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:)"

SSN = r"(?<![\w\-])(?P<area>\d{3})-(?P<group>\d{2})-(?P<serial>\d{4})(?![\w\-])"

# Digit groups joined by one separator each (optionally with parentheses): "+44 (0)20 7946-0958", "030/1234567".
# A list such as "020 7946 0958 / 0161 496 0000" stays two candidates; nothing starts right after "12:" (a
# time). Every joiner consumes a non-digit, so the repetition cannot backtrack exponentially; the lookahead
# drops short numbers before any work.
PHONE_CANDIDATE = (
    r"(?<![\w+.,/\-])(?<!\d:)(?=[\d()+.\-/ \t\u00a0]{7})\+?\(?\d+"
    r"(?:(?:\)?[ .\-/\t\u00a0]\(?|\)\(?|\()\d+)*\)?(?!\w)"
)
# Shapes phonenumbers may accept that people never use for phone numbers: the US SSN layout (3-2-4 with
# hyphens), dates (15.03.2024, 2024-03-15), hyphenated numbers ending in a one-digit group (ISBNs, part
# numbers), decimals (0.9935992) and four or more dotted 1-3 digit groups (IPv4 addresses, versions),
# except the French 01.23.45.67.89: two digits a group, starting with the trunk 0.
NOT_A_PHONE = (
    r"\d{3}-\d{2}-\d{4}|\d{1,4}([./\-])\d{1,2}\1\d{1,4}|\d+(?:-\d+)*-\d|\d+\.\d+"
    r"|(?!0\d(?:\.\d\d)+$)\d{1,3}(?:\.\d{1,3}){3,}"
)
# Candidates holding these are something else: a dot next to other separators ("1.0.0 (2025-12-09)", a
# changelog heading; phone numbers use dots alone), or a whole date.
NOT_IN_A_PHONE = r"\.(?=.*[ \-/()])|[ \-/()](?=.*\.)|\d{4}-\d\d-\d\d|\d\d?[./]\d\d?[./]\d{4}"
# A short upper-case group mixing letters and digits ("FR31", "Z417", "89BS") one space before or after
# digits makes them part of a grouped reference or an IBAN-shaped string, not a phone number.
CODE_BEFORE = r"(?<![\w])(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*[0-9])[A-Z0-9]{2,5} \Z"
CODE_AFTER = r" (?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*[0-9])[A-Z0-9]{2,5}(?!\w)"
# A line of numbers only (digits and separators): beside another such line it is a column of figures (a
# program's sample output, a table), where a phone-shaped number without a phone word is not a phone.
NUMBERS_LINE = r"[ \t]*[\d.,:;+\-/()]+(?:[ \t]+[\d.,:;+\-/()]+)*[ \t]*"
# Words that make an unformatted run of digits ("call 2125550187") a phone number rather than an id.
PHONE_CONTEXT = (
    r"(?i)(?:\btel|\bphone|\bcall|\bfax|\bmobile|\bmob\b|\bcell|whatsapp|\bcontact|\bsms\b|\btext\b|\bring\b"
    r"|telefon|tel[eé]fono|t[ée]l[ée]phone|\bportable|\bhandy|n[uú]mero|\bnummer|rufnummer|電話)"
)

# (detail, prefixes, pattern). Each pattern is matched where one of its prefixes occurs (found with
# bytes.find, far faster than a regex scan for an alternation starting with common letters) and starts
# with that prefix; its whole match is the secret. Prefixes are kept few and short ("gh" rather than five
# "gh?_") because each costs a pass over the text. NUL never occurs inside a match, see `PiiDetector`.
SECRET_PATTERNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("aws_access_key_id", ("AKIA", "ASIA"), r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ("github_token", ("gh",), r"(?<![\w])gh[pousr]_[A-Za-z0-9]{36,251}(?!\w)"),
    ("github_token", ("github_pat_",), r"(?<![\w])github_pat_[A-Za-z0-9_]{22,255}(?!\w)"),
    ("slack_token", ("xox",), r"(?<![\w-])xox[abposr]-(?:[A-Za-z0-9]{1,40}-){1,4}[A-Za-z0-9]{6,64}(?![\w-])"),
    (
        "slack_webhook",
        ("https://hooks.slack.com/",),
        r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,32}",
    ),
    ("google_api_key", ("AIza",), r"(?<![\w-])AIza[0-9A-Za-z_\-]{35}(?![\w-])"),
    (
        "stripe_key",
        ("sk_", "rk_"),
        r"(?<![\w])[sr]k_(?:live|test)_[0-9A-Za-z]{16,247}(?!\w)",
    ),
    (
        "private_key",
        ("-----BEGIN ",),
        r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----[^\x00]{16,16384}?"
        r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----",
    ),
    ("openai_key", ("sk-",), r"(?<![\w\-])sk-(?:[a-z]+-)?[A-Za-z0-9_\-]{16,}T3BlbkFJ[A-Za-z0-9_\-]{16,}(?![\w\-])"),
    ("anthropic_key", ("sk-",), r"(?<![\w\-])sk-ant-[a-z]{3,8}\d{2}-[A-Za-z0-9_\-]{80,120}(?![\w\-])"),
    ("huggingface_token", ("hf_",), r"(?<![\w])hf_[A-Za-z]{34}(?!\w)"),
    ("jwt", ("eyJ",), r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{16,}(?![\w\-])"),
)

# AWS secret keys are 40 base64 characters with no prefix, so only a label naming them makes one a key
# rather than a git SHA or a hash. Matched right after an "aws" found in the text; the span is the value.
AWS_SECRET_AFTER = (
    r"[\w.\-]{0,20}?(?i:secret)[\w.\-]{0,20}[\"']?\s*[:=]>?\s*[\"']?"
    r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)

# Words that name a credential, by the stem looked for in the lower-cased text; ASSIGNMENT is matched
# right after each word. `api_key = "..."`, `DB_PASSWORD=...`, `client_secret: ...`, `Bearer ...`.
CREDENTIAL_WORDS: dict[str, tuple[str, ...]] = {
    "api": ("api_key", "api-key", "apikey"),
    "pass": ("password", "passwd", "passphrase"),
    "access_key": ("access_key",),
    "secret": ("secret",),
    "token": ("token",),
    "pwd": ("pwd",),
    "bearer": ("bearer",),
}
ASSIGNMENT = (
    r"[\w\-]{0,16}?[\"']?\s*(?::=|=>|[:=])\s*[\"']?(?P<value>[A-Za-z0-9_\-+/=.!@#$%^&*~]{8,200})"
    r"|[ \t]+(?P<bearer>[A-Za-z0-9_\-+/=.~]{8,400})"
)

# A necessary condition, in RE2 syntax (run by Arrow over a batch, one pass for all of it), for a text to hold
# a secret (a match of SECRET_PATTERNS, AWS_SECRET_AFTER or a credential word's ASSIGNMENT) or an SSN written
# with spaces after its cue word (`_pii_people`'s "ssn" / "social security", or a letter that folds to "i" or
# "s"): each pattern's leading literal, a credential word followed by the ":" or "=" ASSIGNMENT's value form
# needs (WORD_SPACE is Python's \s, wider than RE2's), case folded more widely than the searches do. Only
# texts it flags are searched for those types, so a new secret pattern needs its prefix here too (credential
# words come from CREDENTIAL_WORDS)
# (tests/unit/curate/test_step_equivalence.py checks every type against the unscreened search).
_WORD_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
# CREDENTIAL_WORDS' words other than "bearer" (whose value follows a space, matched by "bearer" above).
_ASSIGNED_WORDS = "|".join(re.escape(w) for ws in CREDENTIAL_WORDS.values() for w in ws if w != "bearer")
SECRET_OR_SSN_SCREEN = (
    r"AKIA|ASIA|gh[pousr]_|github_pat_|xox|https://hooks\.slack\.com/|AIza|[sr]k_|-----BEGIN |sk-|hf_|eyJ"
    r"|(?i:aws|bearer|ssn|social)|[\x{130}\x{131}\x{17f}]"
    rf"|(?i:{_ASSIGNED_WORDS})\S{{0,17}}{_WORD_SPACE}*[:=]"
)


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn checksum that payment cards carry.

    Examples:
        >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
        (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (brand, first prefix, last prefix, prefix length, allowed lengths) — the issuer ranges networks publish.
_CARD_RANGES: tuple[tuple[str, int, int, int, frozenset[int]], ...] = (
    ("visa", 4, 4, 1, frozenset({13, 16, 19})),
    ("mastercard", 51, 55, 2, frozenset({16})),
    ("mastercard", 2221, 2720, 4, frozenset({16})),
    ("amex", 34, 34, 2, frozenset({15})),
    ("amex", 37, 37, 2, frozenset({15})),
    ("discover", 6011, 6011, 4, frozenset(range(16, 20))),
    ("discover", 644, 649, 3, frozenset(range(16, 20))),
    ("discover", 65, 65, 2, frozenset(range(16, 20))),
    ("diners", 300, 305, 3, frozenset(range(14, 20))),
    ("diners", 3095, 3095, 4, frozenset(range(14, 20))),
    ("diners", 36, 36, 2, frozenset(range(14, 20))),
    ("diners", 38, 39, 2, frozenset(range(16, 20))),
    ("jcb", 3528, 3589, 4, frozenset(range(16, 20))),
    ("unionpay", 62, 62, 2, frozenset(range(16, 20))),
    ("mir", 2200, 2204, 4, frozenset(range(16, 20))),
    ("maestro", 5018, 5018, 4, frozenset(range(13, 20))),
    ("maestro", 5020, 5020, 4, frozenset(range(13, 20))),
    ("maestro", 5038, 5038, 4, frozenset(range(13, 20))),
    ("maestro", 5893, 5893, 4, frozenset(range(13, 20))),
    ("maestro", 6304, 6304, 4, frozenset(range(13, 20))),
    ("maestro", 6759, 6759, 4, frozenset(range(13, 20))),
    ("maestro", 6761, 6763, 4, frozenset(range(13, 20))),
)


def card_brand(digits: str) -> str | None:
    """The card network whose issuer range and length fit `digits` and whose Luhn digit checks, else None.

    Examples:
        >>> card_brand("378282246310005"), card_brand("1234567812345678")
        ('amex', None)
    """
    n = len(digits)
    for brand, lo, hi, plen, lengths in _CARD_RANGES:
        if n in lengths and lo <= int(digits[:plen]) <= hi:
            return brand if luhn_valid(digits) else None
    return None


# Registered IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    """Whether an upper-case IBAN without spaces has its country's length and passes the ISO 7064 mod-97 check.

    Examples:
        >>> iban_valid("GB82WEST12345698765432"), iban_valid("GB82WEST12345698765431")
        (True, False)
    """
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    # Letters count as 10..35; int() of the joined digits is faster than folding mod 97 by hand.
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# Numbers the SSA never issued although they pass the area/group/serial rules (Woolworth's wallet card,
# a 1940s advertisement, the textbook example).
_SSN_NEVER_ISSUED = frozenset({"078051120", "219099999", "123456789"})


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """Whether the three parts of a US SSN can have been issued: no 000/666/9xx area, 00 group or 0000 serial.

    Examples:
        >>> ssn_valid("536", "90", "4399"), ssn_valid("666", "12", "3456"), ssn_valid("900", "12", "3456")
        (True, False, False)
    """
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_NEVER_ISSUED


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s character distribution (0 for an empty string).

    Examples:
        >>> shannon_entropy("aaaa"), round(shannon_entropy("abcd"), 2)
        (0.0, 2.0)
    """
    n = len(value)
    if not n:
        return 0.0
    return sum(c / n * math.log2(n / c) for c in Counter(value).values())
