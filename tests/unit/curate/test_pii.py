import doctest
import hashlib
import random
import string

import pytest

from keel.core.errors import InputError
from keel.govern import _pii_detect as _pii
from keel.govern import _pii_patterns
from keel.govern._pii_detect import PiiDetector, PiiSpan, PiiType
from keel.govern._pii_redact import redact

RNG = random.Random(1234)
ALNUM = string.ascii_letters + string.digits


def rand(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


# Tokens are assembled at run time so that secret scanners do not flag this file.
AWS_KEY_ID = "AK" + "IA" + rand(string.ascii_uppercase + "234567", 16)
AWS_SECRET = rand(ALNUM + "/+", 40)
GITHUB = "gh" + "p_" + rand(ALNUM, 36)
GITHUB_PAT = "github" + "_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59)
SLACK = "xo" + "xb-" + rand(string.digits, 12) + "-" + rand(string.digits, 13) + "-" + rand(ALNUM, 24)
GOOGLE = "AI" + "za" + rand(ALNUM + "_-", 35)
STRIPE = "sk" + "_live_" + rand(ALNUM, 24)
OPENAI = "sk-" + "proj-" + rand(ALNUM, 40) + "T3Blbk" + "FJ" + rand(ALNUM, 40)
HF = "hf" + "_" + rand(string.ascii_letters, 34)
PEM_BODY = "\n".join(rand(ALNUM, 64) for _ in range(4))
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + PEM_BODY + "\n-----END RSA PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFkYSJ9." + rand(ALNUM + "_-", 43)


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector()


def found(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    return [(s.type.value, text[s.start : s.end]) for s in detector.detect(text)]


@pytest.mark.parametrize(
    ("kind", "value", "before", "after"),
    [
        ("email", "jane.doe+news@mail.example.co.uk", "Write to ", " before Friday."),
        ("email", "Olu_Silva7@startup.io", "Contact: ", ""),
        ("phone", "+44 20 7946 0958", "Call us on ", " or drop by."),
        ("phone", "(650) 253-0000", "Her number is ", ", text first."),
        ("phone", "030 12345678", "Für Rückfragen: ", "."),
        ("phone", "01 23 45 67 89", "Appelez le ", " pour un rendez-vous."),
        ("phone", "+91 98765 43210", "WhatsApp ", ""),
        ("phone", "03-1234-5678", "Tokyo office ", "."),
        ("phone", "(11) 91234-5678", "Ligue para ", "."),
        ("phone", "6502530000", "Call ", " tonight."),
        ("credit_card", "4111 1111 1111 1111", "Card number: ", " exp 09/27"),
        ("credit_card", "3782-822463-10005", "amex ", "."),
        ("credit_card", "5555555555554444", "Paid with ", "."),
        ("iban", "DE89 3704 0044 0532 0130 00", "IBAN: ", " (EUR)"),
        ("iban", "GB82WEST12345698765432", "Transfer to ", " by Friday."),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606", "Virement sur ", " svp."),
        ("ipv4", "192.168.1.20", "server ", ":8080 is down."),
        ("ipv4", "8.8.4.4", "Login from ", " was blocked."),
        ("ipv6", "2001:db8::8a2e:370:7334", "The host resolves to ", " now."),
        ("ipv6", "fe80::1ff:fe23:4567:890a", "Blocked client ", "."),
        ("ipv6", "2001:db8::1", "http://[", "]:8080/"),
        ("us_ssn", "536-90-4399", "My SSN is ", " if you need it."),
        ("url_credentials", "admin:s3cr3t-Pa55", "postgres://", "@db.internal:5432/app"),
        ("url_credentials", "deploy:ghQ9x7Lm2", "Clone https://", "@git.example.com/repo.git"),
    ],
)
def test_each_type_is_found_in_context_with_exact_offsets(
    detector: PiiDetector, kind: str, value: str, before: str, after: str
) -> None:
    text = before + value + after
    spans = [s for s in detector.detect(text) if s.type == kind]
    assert [(s.start, s.end) for s in spans] == [(len(before), len(before) + len(value))]
    assert all(s.detail is None or s.detail.isidentifier() for s in spans)


@pytest.mark.parametrize(
    ("detail", "value", "before", "after"),
    [
        ("aws_access_key_id", AWS_KEY_ID, "key id ", " leaked"),
        ("aws_secret_access_key", AWS_SECRET, "aws_secret_access_key = ", "\n"),
        ("github_token", GITHUB, "token ", " in the log"),
        ("github_token", GITHUB_PAT, "export GH=", ""),
        ("slack_token", SLACK, "bot: ", "."),
        ("google_api_key", GOOGLE, "key=", "&q=x"),
        ("stripe_key", STRIPE, "STRIPE ", ""),
        ("openai_key", OPENAI, "OPENAI_KEY ", " ok"),
        ("huggingface_token", HF, "use ", " to pull"),
        ("private_key", PEM, "config:\n", "\n"),
        ("jwt", JWT, "Authorization: Bearer ", ""),
        ("assignment", "A9f3kQ7zL2xP8mN4", 'api_key = "', '"'),
        ("assignment", "Summer2024!x", "DB_PASSWORD=", " # change me"),
        ("assignment", "xdIjLBETHvQQCIXyIuArOifTfSDZXmzj", "client_secret: ", "."),
    ],
)
def test_secrets_are_found_with_their_kind(
    detector: PiiDetector, detail: str, value: str, before: str, after: str
) -> None:
    text = before + value + after
    spans = detector.detect(text)
    assert [(s.type, s.start, s.end, s.detail) for s in spans] == [
        (PiiType.SECRET, len(before), len(before) + len(value), detail)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Order #4930123456 shipped; invoice INV-2024-00042 follows.",
        "Upgrade to v1.2.3.4, version 10.0.0.1 or release 2.4.1.0; pin numpy==1.26.4.0 and fasttext>=0.9.2.4.",
        "It happened on 2024-03-15, 15.03.2024 and 03/15/2024 at 14:35:07.",
        "ISBN 0-306-40615-2 and 978-3-16-148410-0 and ISBN 9780306406157.",
        "id 550e8400-e29b-41d4-a716-446655440000, commit 9fceb02d0ae598e95dc970b74767f19372d61af8.",
        "Tracking 1Z999AA10123456784 and 9400 1000 0000 0000 0000 00.",
        "It costs $1,299.99 (€45,00), weighs 12.5 kg and the screen is 1920x1080.",
        "Not a card: 4111111111111112, nor 4111 1111 1111 1112.",
        "Not an IBAN: DE89 3704 0044 0532 0130 01 nor GB82WEST12345698765431.",
        "Not SSNs: 000-12-3456, 666-12-3456, 912-34-5678, 123-45-6789.",
        "Not addresses: 300.1.2.3, 1.2.3.4.5, 01.02.03.04, a[1::2], std::vector, 12:30:45, 00:1A:2B:3C:4D:5E.",
        "Not e-mail: icon@2x.png, @anna, admin@localhost, name at example dot com.",
        'password = os.environ["DB_PASSWORD"]; api_key: <YOUR_API_KEY>; token = None; password: ********',
        "secret_key = settings.SECRET_KEY and the password is required; Bearer token",
        "sha256:" + "ab" * 32 + " and population 83,200,000.",
        "Scores (0.9935992) and ('fr', 0.4838270).",
        "Ref FR31 0173 2451 89BS 9BKD and https://example.com/anna/123456?page=2",
    ],
)
def test_look_alikes_are_not_detected(detector: PiiDetector, text: str) -> None:
    assert found(detector, text) == []


def test_bare_digits_are_a_phone_only_after_a_phone_word(detector: PiiDetector) -> None:
    assert found(detector, "Order 6502530000 was shipped.") == []
    assert found(detector, "Telefon: 6502530000") == [("phone", "6502530000")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail .jo.doe@example.com now", [("email", "jo.doe@example.com")]),  # no leading dot in a local part
        ("Card 4111 1111 1111 1111 123 on file", [("credit_card", "4111 1111 1111 1111")]),
        ("Call 0044 20 7946 0958 from abroad", [("phone", "0044 20 7946 0958")]),
        ("Call 0121 234 4208 16:25 today", [("phone", "0121 234 4208")]),  # an hour glued to the number
        ("Version: 6.0.12.20261113", []),
        ("x[::2], y[1::2] and fe80::1", [("ipv6", "fe80::1")]),
        ("host 2001:0db8:85a3:0000:0000:8a2e:0370:7334.", [("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]),
        ("aws_secret_access_key = tooShort", []),
        ("AWS secret: " + AWS_SECRET, [("secret", AWS_SECRET)]),
    ],
)
def test_edge_cases(detector: PiiDetector, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(detector, text) == expected


def test_phone_cache_overflow_keeps_results() -> None:
    detector = PiiDetector(types=["phone"])
    assert detector._phones is not None
    detector._phones._CACHE_SIZE = 1  # every new candidate now clears the cache first
    texts = ["Call +44 20 7946 0958", "Call (650) 253-0000", "Call +44 20 7946 0958"]
    assert [found(detector, t) for t in texts] == [
        [("phone", "+44 20 7946 0958")],
        [("phone", "(650) 253-0000")],
        [("phone", "+44 20 7946 0958")],
    ]


def test_a_single_type_name_is_accepted() -> None:
    assert PiiDetector(types="email").types == (PiiType.EMAIL,)


def test_overlaps_go_to_the_more_specific_type(detector: PiiDetector) -> None:
    # The password's "s3cret@db.example.com" also looks like an e-mail address.
    text = "mysql://root:s3cret@db.example.com/app"
    assert found(detector, text) == [("url_credentials", "root:s3cret")]
    # An IPv4-mapped IPv6 address contains a dotted quad.
    assert found(detector, "peer ::ffff:192.0.2.128 connected") == [("ipv6", "::ffff:192.0.2.128")]
    # A Spanish mobile number can be written like an SSN; the SSN wins, and an E.164 number is no card.
    assert found(detector, "SSN 636-90-4399") == [("us_ssn", "636-90-4399")]
    assert found(detector, "Phone: +4915123451564") == [("phone", "+4915123451564")]


def test_overlap_resolution_prefers_priority_then_length_then_position() -> None:
    spans = [
        PiiSpan(PiiType.PHONE, 0, 20),
        PiiSpan(PiiType.CREDIT_CARD, 5, 10),
        PiiSpan(PiiType.EMAIL, 30, 40),
        PiiSpan(PiiType.EMAIL, 32, 45),
        PiiSpan(PiiType.IPV4, 50, 55),
        PiiSpan(PiiType.IPV4, 53, 58),
    ]
    kept = _pii._resolve(spans)
    assert kept == [spans[1], spans[3], spans[4]]
    assert _pii._resolve(list(reversed(spans))) == kept


def test_types_restrict_what_is_looked_for() -> None:
    text = "ada@example.org from host 10.0.0.7, card 4111111111111111"
    assert [s.type for s in PiiDetector(types=["ipv4"]).detect(text)] == [PiiType.IPV4]
    assert [s.type for s in PiiDetector(types=[PiiType.EMAIL, "credit_card"]).detect(text)] == [
        PiiType.EMAIL,
        PiiType.CREDIT_CARD,
    ]
    assert PiiDetector(types=["email"]).detect("+44 20 7946 0958") == []


def test_unknown_type_is_an_input_error_listing_the_valid_ones() -> None:
    with pytest.raises(InputError) as err:
        PiiDetector(types=["email", "passport"])
    assert "passport" in str(err.value)
    assert all(t.value in str(err.value) for t in PiiType)


def test_unknown_phone_region_and_leniency_are_input_errors() -> None:
    with pytest.raises(InputError, match="XX"):
        PiiDetector(phone_regions=["US", "XX"])
    with pytest.raises(InputError, match="strict_grouping"):
        PiiDetector(phone_leniency="loose")  # type: ignore[arg-type]


def test_regions_decide_national_numbers_but_not_international_ones() -> None:
    us_only = PiiDetector(types=["phone"], phone_regions=["US"])
    assert found(us_only, "Ruf an: 030 12345678") == []
    assert found(us_only, "Ruf an: +49 30 12345678") == [("phone", "+49 30 12345678")]
    assert found(PiiDetector(types=["phone"], phone_regions=["de"]), "Ruf an: 030 12345678") == [
        ("phone", "030 12345678")
    ]


def test_empty_text(detector: PiiDetector) -> None:
    assert detector.detect("") == []
    assert detector.detect_many([]) == []
    assert detector.detect_many(["", ""]) == [[], []]
    assert redact("", []) == ""


def test_unicode_offsets_are_str_indices(detector: PiiDetector) -> None:
    text = "Grüße 🙂 von Jürgen — jürgen.müller@example.de, Tel. +49 30 12345678 İİ 4111 1111 1111 1111"
    assert found(detector, text) == [
        ("email", "jürgen.müller@example.de"),
        ("phone", "+49 30 12345678"),
        ("credit_card", "4111 1111 1111 1111"),
    ]
    # "İ" lower-cases to two characters; secrets found through the lower-cased text keep exact offsets.
    text = "İİİ password: Qx7Lm2Pz9Kd"
    assert found(detector, text) == [("secret", "Qx7Lm2Pz9Kd")]


def test_detect_many_matches_detect_one_by_one(detector: PiiDetector) -> None:
    texts = [
        "nothing to see here",
        "mail ada@example.org",
        "",
        "call +44 20 7946 0958 or wire to GB82WEST12345698765432",
        "İİ token: " + rand(ALNUM, 24) + "7",
        "fe80::1ff:fe23:4567:890a and " + GITHUB,
        "12 apples and 3 pears",
    ]
    assert detector.detect_many(texts) == [detector.detect(t) for t in texts]
    assert [bool(r) for r in detector.detect_many(texts)] == [False, True, False, True, True, True, False]


def test_detect_many_keeps_texts_apart(detector: PiiDetector) -> None:
    texts = [
        "see http://",  # the userinfo that follows is in the next text
        "admin:s3cr3t@db.internal",
        "call",  # a phone word for the bare number in the next text
        "6502530000",
        "-----BEGIN RSA PRIVATE KEY-----\nunterminated",
        PEM,
        "NUL\x00inside ada@example.org",
        "version",
        "203.0.113.9",
        "host",  # an address word for the bare quad in the next text
        "10.0.0.1",
    ]
    results = detector.detect_many(texts)
    assert results == [detector.detect(t) for t in texts]
    assert [[(s.type.value, t[s.start : s.end]) for s in r] for t, r in zip(texts, results, strict=True)] == [
        [],
        [("email", "s3cr3t@db.internal")],  # without its scheme, only an address-shaped tail is left
        [],
        [],
        [],
        [("secret", PEM)],
        [("email", "ada@example.org")],
        [],
        [("ipv4", "203.0.113.9")],
        [],
        [],  # small numbers and no address word in its own text: a version, as far as can be told
    ]


def test_spans_carry_no_value(detector: PiiDetector) -> None:
    span = detector.detect("SSN 536-90-4399")[0]
    assert {f: getattr(span, f) for f in PiiSpan.__slots__} == {
        "type": PiiType.US_SSN,
        "start": 4,
        "end": 15,
        "detail": None,
    }


TEXT = "Mail ada@example.org or call +44 20 7946 0958; card 4111 1111 1111 1111."


def test_redact_placeholder_handles_several_spans_in_any_order(detector: PiiDetector) -> None:
    spans = detector.detect(TEXT)
    assert len(spans) == 3
    expected = "Mail <EMAIL> or call <PHONE>; card <CREDIT_CARD>."
    assert redact(TEXT, spans) == expected
    assert redact(TEXT, list(reversed(spans)), "placeholder") == expected


def test_redact_mask_keeps_length_and_layout(detector: PiiDetector) -> None:
    masked = redact(TEXT, detector.detect(TEXT), "mask")
    assert len(masked) == len(TEXT)
    assert masked == "Mail *************** or call ****************; card *******************."


def test_redact_hash_is_a_stable_salted_pseudonym(detector: PiiDetector) -> None:
    text = "from ada@example.org to ada@example.org"
    spans = detector.detect(text)
    digest = hashlib.sha256(b"pepper" + b"ada@example.org").hexdigest()[:12]
    assert redact(text, spans, "hash", salt="pepper") == f"from <EMAIL:{digest}> to <EMAIL:{digest}>"
    assert redact(text, spans, "hash", salt="other") != redact(text, spans, "hash", salt="pepper")
    assert redact(text, spans, "hash") == redact(text, spans, "hash")


def test_redact_rejects_bad_spans_and_modes() -> None:
    text = "0123456789"
    with pytest.raises(InputError, match="non-overlapping"):
        redact(text, [PiiSpan(PiiType.EMAIL, 0, 5), PiiSpan(PiiType.PHONE, 4, 8)])
    with pytest.raises(InputError, match="non-overlapping"):
        redact(text, [PiiSpan(PiiType.EMAIL, 5, 11)])
    with pytest.raises(InputError, match="non-overlapping"):
        redact(text, [PiiSpan(PiiType.EMAIL, -1, 3)])
    with pytest.raises(InputError, match="mask"):
        redact(text, [], "shred")  # type: ignore[arg-type]


def test_checksums() -> None:
    assert _pii_patterns.luhn_valid("79927398713") and not _pii_patterns.luhn_valid("79927398710")
    assert _pii_patterns.card_brand("4111111111111111") == "visa"
    assert _pii_patterns.card_brand("6011111111111117") == "discover"
    assert _pii_patterns.card_brand("4111111111111") is None  # Luhn-invalid 13 digits
    assert _pii_patterns.iban_valid("NL91ABNA0417164300")
    assert not _pii_patterns.iban_valid("NL91ABNA04171643000")  # one digit too many for NL
    assert not _pii_patterns.iban_valid("XX91ABNA0417164300")
    assert not _pii_patterns.ssn_valid("078", "05", "1120")
    assert _pii_patterns.ssn_valid("001", "01", "0001")
    assert _pii_patterns.shannon_entropy("") == 0.0


@pytest.mark.parametrize("module", [_pii, _pii_patterns])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    "text",
    [
        "Furthermore, they do not cover all valid forms.\n\n8.6.4.3. Literal Patterns\n\nA literal pattern is",
        "8.6.4.10. Class Patterns\n\nA class pattern represents a class",
        "The syntax specified in section 6.4.4.2 of the C99 standard, see also § 1.2.3.4.",
        "Z_RLE (zlib 1.2.0.1) and Z_FIXED (zlib 1.2.2.2).",
        'the user agent is "Mozilla/5.0 (X11; U; Linux i686) Gecko/20071127 Firefox/2.0.0.11", while',
        "Successfully installed novas-3.1.1.3 numpy-1.9.2",
        '"[GCC 2.7.2.2]"',
    ],
)
def test_section_and_version_numbers_are_not_ipv4(detector: PiiDetector, text: str) -> None:
    assert [s for s in detector.detect(text) if s.type == PiiType.IPV4] == []


@pytest.mark.parametrize(
    "text",
    [
        "Login from 10.0.0.1 was blocked.",
        "ssh admin@10.1.2.3",
        "inet_pton (for example, '7.10.0.5' or '5aef:2b::8')",
        "connect to 10.0.0.7:22 now",
        "route 10.0.0.0/8 through it",
        "Allowed hosts: 8.8.8.8",
        "It answered from 203.0.113.9 at noon.",  # no context, but no version or section has numbers this big
        "10.20.30.40 is where it lives",
    ],
)
def test_addresses_in_prose_are_still_ipv4(detector: PiiDetector, text: str) -> None:
    assert [s.type for s in detector.detect(text) if s.type != PiiType.IPV6] == [PiiType.IPV4]


def test_columns_of_numbers_in_sample_output_are_not_phones(detector: PiiDetector) -> None:
    output = "This will produce the output:\n\n1 1\n11 39916800\n21 51090942171709440000\n31 82228386541779228177\n"
    assert detector.detect(output) == []
    alone = "Our new number:\n020 7946 0958\nfrom Monday on."
    assert [s.type for s in detector.detect(alone)] == [PiiType.PHONE]
    listed = "Phones:\n020 7946 0958\n020 7946 0959\n"
    assert [s.type for s in detector.detect(listed)] == [PiiType.PHONE, PiiType.PHONE]
