"""The optional Presidio engine for names and places: used when installed, a clear error when not, never downloaded."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime

import pytest

from keel.core.errors import ConfigError, InputError
from keel.curate import build_steps
from keel.data import records_to_table
from keel.data._records import make_record
from keel.govern import PiiDetector
from keel.govern import _pii_presidio as presidio

MODEL = presidio.presidio_model()
needs_presidio = pytest.mark.skipif(
    MODEL is None,
    reason="the Presidio engine needs presidio-analyzer and an English spaCy pipeline installed: "
    "pip install presidio-analyzer and a spaCy model package such as en_core_web_sm (Keel never downloads one)",
)


def test_asking_for_presidio_without_it_says_how_to_enable_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "presidio_analyzer" else real(name)
    )
    with pytest.raises(ConfigError, match="presidio-analyzer is not installed.*never downloads"):
        PiiDetector(["person"], engine="presidio")
    with pytest.raises(ConfigError, match="presidio-analyzer is not installed"):
        build_steps([("pii", {"types": ["person"], "engine": "presidio"})])
    assert PiiDetector(["person"]).engine == "keel"  # the built-in engine needs nothing extra


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(InputError, match="'keel' or 'presidio'"):
        PiiDetector(["person"], engine="spacy")  # type: ignore[arg-type]


@needs_presidio
def test_presidio_finds_names_and_places_keel_keeps_the_rest() -> None:
    detector = PiiDetector(["person", "address", "date_of_birth", "email"], engine="presidio")
    text = "Hello, I am Margaret Thompson from Leeds, born 14 March 1962; write to mt@example.org"
    found = {(s.type.value, text[s.start : s.end]) for s in detector.detect(text)}
    assert ("person", "Margaret Thompson") in found
    assert ("address", "Leeds") in found
    assert ("date_of_birth", "14 March 1962") in found  # Keel's cue-anchored pattern, not Presidio's DATE_TIME
    assert ("email", "mt@example.org") in found
    # One pass over several texts gives each text's own offsets (texts are joined internally).
    many = detector.detect_many(["Ada Lovelace wrote it.", "nothing personal here", "ask Alan Turing"])
    assert [[(s.start, s.end) for s in spans] for spans in many] == [[(0, 12)], [], [(4, 15)]]


@needs_presidio
def test_the_pii_step_redacts_with_presidio() -> None:
    (step,) = build_steps([("pii", {"types": ["person"], "engine": "presidio"})])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    texts = ["Please call back Jonathan Pryce about the invoice.", "Nobody is named here.", ""]
    table = records_to_table(make_record(t, f"file:///d/{i}", i, t.encode(), now) for i, t in enumerate(texts))
    out = step.apply(table).table
    assert out.column("text").to_pylist() == ["Please call back <PERSON> about the invoice.", texts[1], ""]
    assert out.column("pii_spans").to_pylist()[0][0]["type"] == "person"


@needs_presidio
def test_an_uninstalled_spacy_model_is_refused_not_downloaded() -> None:
    with pytest.raises(ConfigError, match="'en_core_web_lg_missing' is not installed"):
        presidio.PresidioFinder(model="en_core_web_lg_missing")
