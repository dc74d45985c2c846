"""Rewritten curation steps give what the straightforward per-text implementation gives, on varied text.

The speed work on normalize, language and pii (issue 18) moved per-text Python into batch kernels and
pre-screens; each test here keeps a plain reference implementation and compares outputs on text chosen to
break pre-screens: unicode in several scripts, mojibake, control characters, code, empty texts, huge lines.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from keel.curate import build_steps
from keel.data import records_to_table
from keel.data._records import make_record
from keel.govern._pii_detect import _SCREEN_MIN_CHARS


def _varied() -> list[str]:
    base = [
        "",
        " ",
        "plain ascii text, nothing to do.",
        "The caf\u00e9 is open \u2014 isn\u2019t it? \u00b6",
        "The caf\u00c3\u00a9 is open",  # mojibake
        "caf\u00c3\u00a9 " * 3000,  # a huge line of mojibake
        "x" * 200_000 + "\u00e9\u00e9",  # a huge ASCII line, then two non-ASCII characters together
        "\u00e9" + "a" * 2 + "\u00e8",  # two non-ASCII 2 apart
        "\u00e9" + "a" * 3 + "\u00e8",  # and 3 apart
        "C1 control \u0085 and \u009f here",
        "\u0152uvre \u0153uf \u00c2 \u00c3",
        "e\u0301 combining acute (NFD)",
        "\u30c6\u30b9\u30c8\u3067\u3059\u3002\u65e5\u672c\u8a9e\u306e\u6587\u7ae0",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u042d\u0442\u043e \u0442\u0435\u0441\u0442.",
        "emoji \U0001f600\U0001f600 astral \U00010348 and NUL \x00 bell \x07 escape \x1b[31mred\x1b[0m",
        "def f(x):\n    return {'a': x}  # code\n\n\n\tindented\r\n",
        "\ufeffBOM and \u00a0no-break\u2009thin space",
        "mail ada@example.org, call +44 20 7946 0958, card 4111 1111 1111 1111, host 10.0.0.7",
        "IBAN GB82 WEST 1234 5698 7654 32 and SSN 536-90-4399, key AKIAIOSFODNN7EXAMPLE",
    ]
    broken = [t.encode().decode("cp1252", errors="replace") for t in base if not t.isascii()]
    return base + broken + [t.encode("utf-8", "replace").decode("latin-1") for t in base[3:8]]


def _table(texts: list[str]) -> pa.Table:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return records_to_table(make_record(t, f"file:///{i}", i, b"", now) for i, t in enumerate(texts))


def _reference_normalize(text: str) -> tuple[str, bool]:
    """The step's default parameters, one text at a time: (output, whether mojibake was repaired)."""
    import re

    import ftfy
    from ftfy.badness import is_bad

    from keel.curate._basic_steps import _conservative_ftfy

    repaired = False
    if not text.isascii() and is_bad(text):
        text, repaired = ftfy.fix_text(text, _conservative_ftfy()), True
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text), repaired


def test_the_batch_mojibake_check_agrees_with_the_per_text_one(doc_pages: list[Any]) -> None:
    from keel.curate._basic_steps import may_be_mojibake, may_be_mojibake_many

    texts = _varied() + [p.text for p in doc_pages[:120]]
    texts += [p.text.encode().decode("cp1252", errors="replace") for p in doc_pages[:40]]
    assert may_be_mojibake_many(pa.array(texts)).tolist() == [may_be_mojibake(t) for t in texts]
    assert may_be_mojibake_many(pa.array([], pa.string())).tolist() == []


def test_the_stretch_check_gives_ftfys_answer_on_hostile_text() -> None:
    """`_is_bad` asks ftfy about stretches around the suspect places only: the same answer as the whole text."""
    import random

    from ftfy.badness import MOJIBAKE_CATEGORIES, is_bad

    from keel.curate._basic_steps import _is_bad

    rng = random.Random(7)
    odd = "".join(MOJIBAKE_CATEGORIES.values()) + "\u0413\u045e\u0412\u0402\u0392\u20ac\u0101\u221a\u201a\u00c4\u00d7"
    plain = "ab .,?!Z1\x00\n\t"
    texts = ["\u00c3 at the start", "\u00c2 x", "123456\u00c3 b", "1234567\u00c3 b", "\x00\u00c3 ", "\u0153\x00a"]
    for _ in range(30_000):
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append("".join(rng.choice(odd) for _ in range(rng.randint(1, 3))))
            parts.append("".join(rng.choice(plain) for _ in range(rng.randint(0, 14))))
        texts.append("".join(parts))
    answers = [is_bad(t) for t in texts]
    assert 0.2 < sum(answers) / len(answers) < 0.8  # both answers are well represented
    assert [_is_bad(t) for t in texts] == answers


@pytest.mark.parametrize("chunks", [1, 3])
def test_normalize_gives_what_the_per_text_reference_gives(chunks: int) -> None:
    texts = _varied()
    table = _table(texts)
    if chunks > 1:  # a chunked text column, as a table read from several files has
        table = pa.concat_tables([table.slice(0, 5), table.slice(5, 7), table.slice(12)])
    (step,) = build_steps([("normalize", {})])
    result = step.apply(table)
    expected = [_reference_normalize(t) for t in texts]
    assert result.table.column("text").to_pylist() == [out for out, _ in expected]
    assert result.drop_reasons == [None if out else "empty_after_normalize" for out, _ in expected]
    assert step.counters["mojibake_repaired"] == sum(r for _, r in expected)
    assert step.counters["changed"] == sum(out != t for t, (out, _) in zip(texts, expected, strict=True))


def _secret_texts() -> list[str]:
    """Every secret kind, SSNs after their cue words, and near misses, in several casings and spacings."""
    import random
    import string

    rng = random.Random(7)
    alnum = string.ascii_letters + string.digits

    def rand(alphabet: str, n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    values = [
        "AK" + "IA" + rand(string.ascii_uppercase + "234567", 16),
        "AS" + "IA" + rand(string.ascii_uppercase + "234567", 16),
        "gh" + "p_" + rand(alnum, 36),
        "gh" + "s_" + rand(alnum, 40),
        "github" + "_pat_" + rand(alnum, 22) + "_" + rand(alnum, 59),
        "xo" + "xb-" + rand(string.digits, 12) + "-" + rand(string.digits, 13) + "-" + rand(alnum, 24),
        f"https://hooks.slack.com/services/T{rand('ABCDEFG0123', 9)}/B{rand('ABC012', 9)}/{rand(alnum, 24)}",
        "AI" + "za" + rand(alnum + "_-", 35),
        "sk" + "_live_" + rand(alnum, 24),
        "rk" + "_test_" + rand(alnum, 24),
        "sk-" + "proj-" + rand(alnum, 40) + "T3Blbk" + "FJ" + rand(alnum, 40),
        "sk-" + "ant-api03-" + rand(alnum, 95),
        "hf" + "_" + rand(string.ascii_letters, 34),
        "-----BEGIN RSA " + "PRIVATE KEY-----\n" + rand(alnum, 64) + "\n-----END RSA PRIVATE KEY-----",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + rand(alnum + "_-", 43),
    ]
    secret = rand(alnum, 20) + "7"
    assigned = [
        f"aws_secret_access_key = {rand(alnum + '/+', 40)}",
        f"AWS_SECRET_ACCESS_KEY={rand(alnum + '/+', 40)}",
        f'"aws_secret_key": "{rand(alnum + "/+", 40)}"',
        f'api_key = "{secret}"',
        f"API_KEY={secret}",
        f"Api-Key: {secret}",
        f"client_secret: {secret}",
        f"Authorization: Bearer {secret}",
        f"auth_token: {secret}",
        f"DB_PASSWORD={secret}",
        f"passwd\u3000=\u00a0{secret}",  # Unicode spaces around the "="
        f"pwd := {secret}",
        f"password => '{secret}'",
        f"PASS\u017fWORD: {secret}",  # a long s
        f"\u0130\u0130 token: {secret}",  # "İ" lower-cases to two characters
        "the password is required",
        "password: ********",
        "token is " + secret,
        "SSN 536 90 4399",
        "Social Security number: 536 90 4399",
        "SOCIAL  SECURITY # 536.90.4399",
        "\u017f\u017fn 536 90 4399",
        "soc\u0131al security 536 90 4399",
    ]
    texts = [f"{head}{v}{tail}" for v in values for head, tail in (("", ""), ("key ", "."), ("x", "y"))]
    texts += assigned + [t.upper() for t in assigned] + [t.lower() for t in assigned]
    texts += ["plain prose with no secret at all", "", "\x00", "the high ground, ghosts and thoughts"]
    return texts


def test_the_pii_screen_finds_what_the_unscreened_search_finds(
    doc_pages: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import random
    import sys
    from pathlib import Path

    from keel.govern import PiiDetector

    spec = importlib.util.spec_from_file_location(
        "pii_bench", Path(__file__).resolve().parents[3] / "benchmarks" / "pii.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "pii_bench", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    values = bench.Values(random.Random(3))
    generated = [bench.document(values).text for _ in range(600)]
    pages = [p.text for p in doc_pages[:150]]
    texts = _secret_texts() + _varied() + generated + pages
    assert sum(map(len, texts)) >= _SCREEN_MIN_CHARS  # so that detect_many screens
    found = set()
    for types in (None, ["secret"], ["us_ssn"], ["secret", "email", "id_document"]):
        detector = PiiDetector(types)
        screened = detector.detect_many(texts)
        assert screened == [detector.detect(t) for t in texts]  # one text at a time: never screened
        found |= {s.type for spans in screened for s in spans}
    assert {"secret", "us_ssn", "email", "phone"} <= found
    secrets = PiiDetector(["secret"]).detect_many(_secret_texts())
    assert sum(bool(s) for s in secrets) >= 60


@pytest.mark.parametrize("params", [{}, {"action": "flag", "drop_types": ["secret"]}, {"mode": "mask"}])
def test_the_pii_step_gives_what_per_text_detection_and_rewriting_give(params: dict[str, Any]) -> None:
    from keel.curate._pii_step import PiiParams, _rewrite
    from keel.govern import PiiDetector

    texts = _secret_texts() + _varied()
    assert sum(map(len, texts)) >= _SCREEN_MIN_CHARS  # so that the step's detection screens
    (step,) = build_steps([("pii", {"index_subjects": False, **params})])
    result = step.apply(_table(texts))
    p = PiiParams(index_subjects=False, **params)
    detector = PiiDetector()
    expected_texts, expected_spans, expected_reasons = [], [], []
    for text in texts:
        spans = detector.detect(text)
        if p.action == "redact":
            text, recorded = _rewrite(text, spans, p)
        else:
            recorded = [{"type": str(s.type), "start": s.start, "end": s.end, "detail": s.detail} for s in spans]
        expected_texts.append(text)
        expected_spans.append(recorded)
        hit = sorted({str(s.type) for s in spans} & set(p.drop_types))
        expected_reasons.append(f"pii_{hit[0]}" if hit else None)
    assert result.table.column("text").to_pylist() == expected_texts
    assert result.table.column("pii_spans").to_pylist() == expected_spans
    assert result.drop_reasons == expected_reasons
    assert sum(bool(s) for s in expected_spans) > 60
