"""Curation steps on real documentation text (python3-doc's pages): what they change, keep and redact."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from keel.curate import build_steps
from keel.data import records_to_table
from keel.data._records import make_record


def _table(pages: list[Any]) -> pa.Table:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return records_to_table(
        make_record(p.text, f"file:///{p.name}", i, p.text.encode(), now) for i, p in enumerate(pages)
    )


def test_default_normalize_leaves_documentation_and_its_code_blocks_as_they_are(doc_pages: list[Any]) -> None:
    (step,) = build_steps([("normalize", {})])
    out = step.apply(_table(doc_pages)).table.column("text").to_pylist()
    changed = [p.name for p, text in zip(doc_pages, out, strict=True) if text != p.text]
    # Only pages that are not in NFC change (2 of 498 on python3-doc 3.11), never by whitespace or quotes.
    assert len(changed) <= 0.01 * len(doc_pages), changed
    blocks = [(i, code.strip()) for i, p in enumerate(doc_pages) for code in p.code if code.strip() in p.text]
    assert len(blocks) > 1000 and any("\n    " in code for _, code in blocks)  # indented Python among them
    assert [code for i, code in blocks if code not in out[i]] == []  # every code block byte-identical


def test_opt_in_whitespace_collapsing_is_what_flattens_code(doc_pages: list[Any]) -> None:
    (step,) = build_steps([("normalize", {"collapse_whitespace": True})])
    pages = [p for p in doc_pages if any("\n    " in code for code in p.code)][:20]
    out = step.apply(_table(pages)).table.column("text").to_pylist()
    assert all(text != p.text for p, text in zip(pages, out, strict=True))


def test_the_documents_preset_keeps_documentation_the_web_preset_drops(doc_pages: list[Any]) -> None:
    kept = {}
    for preset in ("web", "documents"):
        (step,) = build_steps([("quality", {"preset": preset})])
        reasons = step.apply(_table(doc_pages)).drop_reasons
        kept[preset] = sum(r is None for r in reasons) / len(doc_pages)
    assert kept["documents"] >= 0.95  # 492 of 498 on python3-doc 3.11: the rest are near-empty index pages
    assert kept["web"] < 0.5  # C4's curly bracket, FineWeb's duplicated characters, Gopher's repeated 5-grams


def test_no_section_number_of_the_documentation_is_redacted_as_an_address(doc_pages: list[Any]) -> None:
    import re

    from keel.govern import PiiDetector

    texts = [p.text for p in doc_pages]
    found = PiiDetector(types=["ipv4", "phone"]).detect_many(texts)
    quads = [t[s.start : s.end] for t, spans in zip(texts, found, strict=True) for s in spans if s.type == "ipv4"]
    headings = {m.group(1) for t in texts for m in re.finditer(r"(?m)^((?:\d+\.){3}\d+)\. \w", t)}
    assert len(headings) > 30 and not headings & set(quads)  # "8.6.4.3. Literal Patterns" and the like
    assert len(quads) > 200 and all(q.startswith(("0.", "1.0.0.127", "7.10.", "9", "1", "2")) for q in quads)


def test_the_cheap_mojibake_check_agrees_with_ftfys_heuristic(doc_pages: list[Any]) -> None:
    from ftfy.badness import is_bad

    from keel.curate._basic_steps import may_be_mojibake

    clean = [p.text for p in doc_pages[:150] if not p.text.isascii()]
    broken = [t.encode().decode("cp1252", errors="replace") for t in clean[:75]]
    broken += [t.encode().decode("latin-1") for t in clean[75:]]
    other = [t.encode().decode(codec, errors="replace") for t in clean[:40] for codec in ("cp1251", "mac_roman")]
    assert [may_be_mojibake(t) for t in other] == [is_bad(t) for t in other]
    assert [may_be_mojibake(t) for t in clean + broken] == [is_bad(t) for t in clean + broken]
    assert sum(map(may_be_mojibake, broken)) == len(broken) and not any(map(may_be_mojibake, clean))
    (step,) = build_steps([("normalize", {})])
    latin = [type(p)(p.name, t, ()) for p, t in zip(doc_pages, broken[75:95], strict=False)]  # reversible damage
    repaired = step.apply(_table(latin)).table.column("text").to_pylist()
    assert repaired == [unicodedata.normalize("NFC", t) for t in clean[75:95]]
    assert step.counters["mojibake_repaired"] == 20
