from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from keel.govern._pii_people import FEATURES, PeopleFinder, describe_model

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def finder() -> PeopleFinder:
    return PeopleFinder()


def _found(finder: PeopleFinder, text: str) -> list[tuple[str, str]]:
    return sorted((kind, text[s:e]) for kind, s, e in finder.find(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The refund was approved by Helena Vasquez.", [("person", "Helena Vasquez")]),
        ("Signed for by Mr. Abernathy at the door.", [("person", "Abernathy")]),
        ("Ngozi Chukwu, who filed the claim, wants a call.", [("person", "Ngozi Chukwu")]),
        ("Send it to 742 Evergreen Terrace, Springfield.", [("address", "742 Evergreen Terrace, Springfield")]),
        ("Die Lieferung ging an Bahnhofstraße 12, 80335 München.", [("address", "Bahnhofstraße 12, 80335 München")]),
        ("He was born on 30 April 1961 in Accra.", [("date_of_birth", "30 April 1961")]),
        ("Passport number: K4471932 (issued 2019).", [("id_document", "K4471932")]),
        ("SSN 219 09 9999 on the form.", [("us_ssn", "219 09 9999")]),
        # A lone name that is also an English word needs a cue; an initial or a title vouches for any name.
        ("Thanks, Mark! Hi Grace, the order shipped.", [("person", "Grace"), ("person", "Mark")]),
        ("Author: A. M. Kuchling", [("person", "Kuchling")]),
        ("The ticket was closed by Dr. Unwin.", [("person", "Unwin")]),
    ],
)
def test_finds_what_people_write(finder: PeopleFinder, text: str, expected: list[tuple[str, str]]) -> None:
    assert _found(finder, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Call Py_DECREF() on the PyObject before the GIL is released.",  # identifiers, acronyms
        "Don't restart CPython; it'll reload the module.",  # contractions, camel case
        "See 8.6.4.3. Literal Patterns and Python 3.11.7 release notes.",  # section numbers, versions
        "Flights to Costa Rica and Saint Lucia leave on Monday.",  # multi-word places, weekdays
        "The meeting on 12 March 2024 moved to Room 4.",  # a date that is no birth date
        "Order 48213 ships in 3 business days.",
        # Real documentation (python3-doc): platforms, headings, code terms, months, languages, places, eponyms.
        "Availability: Unix, not Emscripten, not WASI.",
        'Traceback (most recent call last):\n  File "<stdin>", line 1',
        "Changed in version 3.6: Line numbers can be decreasing.",
        "Namespaces are implemented as dictionaries.",
        "Jan 1\nFeb 2\nMar 3",
        "Use the German locale; the name might vary with platform.",
        "Use Borland's free compiler to build Python.",
        "class X(metaclass=Meta): pass",
        "The context's Emin and Emax limits; MIN_EMIN is the lowest Emin.",
    ],
)
def test_leaves_prose_without_personal_data_alone(finder: PeopleFinder, text: str) -> None:
    assert _found(finder, text) == []


def test_the_shipped_model_matches_the_features() -> None:
    model = describe_model()
    assert model["features"] == list(FEATURES) and len(model["weights"]) == len(FEATURES)
    assert 0.0 < model["threshold"] < 1.0


def test_quality_on_the_handwritten_set_holds() -> None:
    """The benchmark's hand-written sentences (never produced by the training generator) keep their scores."""
    spec = importlib.util.spec_from_file_location("pii_people_bench", ROOT / "benchmarks" / "pii_people.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["pii_people_bench"] = bench
    spec.loader.exec_module(bench)
    scores = bench.score(PeopleFinder(), bench.load_cases())
    for kind in ("person", "address"):
        assert scores[kind]["precision"] >= 0.9 and scores[kind]["recall"] >= 0.9, (kind, scores[kind])
    for kind in ("date_of_birth", "id_document", "us_ssn"):
        assert scores[kind]["precision"] >= 0.98 and scores[kind]["recall"] >= 0.99, (kind, scores[kind])


def test_pii_detector_finds_people_types_when_asked_and_redacts_them() -> None:
    from keel.govern import PiiDetector, redact

    text = "Hi, I'm Ingrid Solberg, born 4 July 1990, living at 18 Harbour Road, Cork. Mail: ingrid@example.org"
    assert {span.type.value for span in PiiDetector().detect(text)} == {"email"}  # opt-in: not by default
    spans = PiiDetector("all").detect(text)
    assert [(s.type.value, text[s.start : s.end]) for s in spans] == [
        ("person", "Ingrid Solberg"),
        ("date_of_birth", "4 July 1990"),
        ("address", "18 Harbour Road, Cork"),
        ("email", "ingrid@example.org"),
    ]
    assert redact(text, spans) == "Hi, I'm <PERSON>, born <DATE_OF_BIRTH>, living at <ADDRESS>. Mail: <EMAIL>"
    many = PiiDetector(["person", "us_ssn"]).detect_many(["Ask Tomasz Wrona.", "SSN 219 09 9999 here"])
    assert [[(s.type.value, s.start, s.end) for s in spans] for spans in many] == [
        [("person", 4, 16)],
        [("us_ssn", 4, 15)],
    ]


def test_curation_pii_step_redacts_names_when_its_types_name_them() -> None:
    from datetime import UTC, datetime

    from keel.curate import build_steps
    from keel.data import make_record, records_to_table

    text = "Customer Paulina Kowalski wants a refund."
    table = records_to_table([make_record(text, "file:///t.txt", 0, text.encode(), datetime(2026, 1, 1, tzinfo=UTC))])
    (step,) = build_steps([("pii", {"types": ["person", "email"]})])
    assert step.apply(table).table.column("text").to_pylist() == ["Customer <PERSON> wants a refund."]
    (default,) = build_steps([("pii", {})])
    assert default.apply(table).table.column("text").to_pylist() == [text]  # names are opt-in


@pytest.mark.parametrize(
    "text",
    [
        "SSN 219 09 9999 on the form.",
        "Social Security number: 219.09.9999",
        "ſocial ſecurity 219 09 9999",  # long s: matched by IGNORECASE, not by lowering, so the full search runs
        "Passport no X1234567, SSN 219 09 9999.",
        "No identity number here: 219 09 9999.",
        "passport X1234567 only",
    ],
)
def test_ssn_alone_finds_what_id_document_finds_of_ssns(text: str) -> None:
    both = [found for found in PeopleFinder(("id_document",)).find(text) if found[0] == "us_ssn"]
    assert PeopleFinder(("us_ssn",)).find(text) == both  # SSNs only: no document numbers, no SSN lost


def test_a_detector_without_id_document_runs_the_ssn_pattern_alone() -> None:
    from keel.govern._pii_detect import PiiDetector

    text = "Passport no X1234567, SSN 219 09 9999."
    assert PiiDetector(["us_ssn"])._people.types == frozenset({"us_ssn"})  # type: ignore[union-attr]
    assert [(s.type.value, text[s.start : s.end]) for s in PiiDetector(["us_ssn"]).detect(text)] == [
        ("us_ssn", "219 09 9999")
    ]
    assert ("id_document", "X1234567") in [
        (s.type.value, text[s.start : s.end]) for s in PiiDetector(["us_ssn", "id_document"]).detect(text)
    ]
