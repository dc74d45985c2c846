from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keel.curate import build_steps
from keel.curate._step import GlobalStep
from keel.data import records_to_table
from keel.data._records import make_record


def _table(texts: list[str], uris: list[str] | None = None):  # type: ignore[no-untyped-def]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return records_to_table(
        make_record(t, (uris or [f"file:///d/{i}.txt" for i in range(len(texts))])[i], i, t.encode(), now)
        for i, t in enumerate(texts)
    )


def _step(name: str, **params):  # type: ignore[no-untyped-def]
    (step,) = build_steps([(name, params)])
    return step


def test_normalize_repairs_and_tidies() -> None:
    step = _step("normalize", lowercase=True, collapse_whitespace=True)
    result = step.apply(_table(["The cafÃ© is\x07 open  \t now.\n\n\n\nYes", "   \x00  "]))
    assert result.table.column("text").to_pylist() == ["the café is open now.\n\nyes", ""]
    assert result.drop_reasons == [None, "empty_after_normalize"]


def test_length_bounds() -> None:
    result = _step("length", min_chars=3, max_chars=5).apply(_table(["ab", "abcd", "abcdef"]))
    assert result.drop_reasons == ["too_short", None, "too_long"]


def test_blocklist_words_and_domains(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("casino\nfree money\n")
    step = _step("blocklist", words_file=str(tmp_path / "words.txt"), domains=["spam.example"])
    texts = ["Visit our casino", "Free Money inside", "See https://spam.example/x", "A casino-free zone? fine", "ok"]
    uris = ["file:///a", "file:///b", "file:///c", "file:///d", "https://www.spam.example/page"]
    reasons = step.apply(_table(texts, uris)).drop_reasons
    assert reasons == ["blocked_words", "blocked_words", "blocked_domain", "blocked_words", "blocked_domain"]
    with pytest.raises(ValueError, match="at least one of"):
        _step("blocklist")


def test_exact_dedup_keeps_the_first_across_shards() -> None:
    step = _step("exact_dedup")
    assert isinstance(step, GlobalStep)
    shards = [_table(["Hello  World", "other"]), _table(["hello world", "third", "other"])]
    decisions = step.decide([step.observe(s) for s in shards])
    assert [step.apply_decision(s, d).drop_reasons for s, d in zip(shards, decisions, strict=True)] == [
        [None, None],
        ["exact_duplicate", None, "exact_duplicate"],
    ]
    assert step.report(decisions) == {"duplicates": 2}
    raw = _step("exact_dedup", normalize=False)
    assert raw.decide([raw.observe(shards[0]), raw.observe(shards[1])])[1] == {2}


def test_decontaminate_drops_documents_sharing_eval_ngrams(tmp_path: Path) -> None:
    question = "What is the maximum weight an ACME anvil can hold when mounted on the standard steel base plate?"
    (tmp_path / "eval.jsonl").write_text(json.dumps({"input": question, "expected_output": "500 kg"}) + "\n")
    (tmp_path / "short.txt").write_text("refund window is fourteen days from the delivery date")
    step = _step("decontaminate", eval_files=[str(tmp_path / "eval.jsonl"), str(tmp_path / "short.txt")])
    docs = [
        "Forum post: " + question.lower() + " Thanks!",
        "Anvils are heavy. The standard base plate is steel.",
        "Our REFUND window is fourteen days from the delivery date, see policy.",
    ]
    assert step.apply(_table(docs)).drop_reasons == ["eval_contamination", None, "eval_contamination"]


def test_near_dedup_drops_edited_copies_and_tags_clusters() -> None:
    base = " ".join(f"word{i} appears in sentence {i % 7} about anvils" for i in range(60))
    edited = base.replace("word10 ", "changed ").replace("word20 ", "other ")
    unrelated = " ".join(f"token{i} describes refunds policy {i % 5}" for i in range(60))
    step = _step("near_dedup", threshold=0.8)
    shards = [_table([base, unrelated]), _table([edited, "short text"])]
    decisions = step.decide([step.observe(s) for s in shards])
    results = [step.apply_decision(s, d) for s, d in zip(shards, decisions, strict=True)]
    ids = [s.column("id").to_pylist() for s in shards]
    kept = ids[0][0]  # the first in input order
    assert results[0].table.column("dup_cluster").to_pylist() == [kept, None]
    assert results[1].table.column("dup_cluster").to_pylist() == [kept, None]
    dropped = [r for result in results for r in result.drop_reasons or []]
    assert dropped.count("near_duplicate") == 1
    report = step.report(decisions)
    assert report["clusters"] == 1 and report["s_curve"][-1] == [1.0, 1.0]
    with pytest.raises(ValueError, match="bands"):
        _step("near_dedup", bands=40, rows=4, num_perm=64, threshold=None)


def test_language_adds_columns_and_filters() -> None:
    texts = [
        "The refund is issued within fourteen days after we receive the returned anvil.",
        "Die Rückerstattung erfolgt innerhalb von vierzehn Tagen nach Eingang des Ambosses.",
        "12345 !!! ###",
    ]
    step = _step("language", languages=["en"], min_score=0.5)
    result = step.apply(_table(texts))
    assert result.table.column("lang").to_pylist()[:2] == ["en", "de"]
    assert result.table.column("lang").to_pylist()[2] == "und"
    assert result.drop_reasons == [None, "language_not_kept", "language_not_kept"]
    everything = _step("language", min_score=0.5).apply(_table(texts))
    assert everything.drop_reasons == [None, None, "language_low_score"]
    assert step.counters["lang.de"] == 1


def test_pii_redacts_and_records_spans_at_the_placeholders() -> None:
    text = "Mail ada@example.org or call +44 20 7946 0958. Key AKIAIOSFODNN7EXAMPLE here."
    step = _step("pii")
    result = step.apply(_table([text, "nothing personal"]))
    (redacted, clean) = result.table.column("text").to_pylist()
    assert "ada@example.org" not in redacted and "<EMAIL>" in redacted and clean == "nothing personal"
    spans = result.table.column("pii_spans").to_pylist()
    assert [s["type"] for s in spans[0]] == ["email", "phone", "secret"] and spans[1] == []
    assert all(redacted[s["start"] : s["end"]].startswith("<") for s in spans[0])
    assert result.drop_reasons == [None, None]
    hashed = _step("pii", mode="hash", salt="s").apply(_table([text])).table.column("text")[0].as_py()
    assert "<EMAIL:" in hashed
    flagged = _step("pii", action="flag", drop_types=["secret"]).apply(_table([text]))
    assert flagged.table.column("text")[0].as_py() == text and flagged.drop_reasons == ["pii_secret"]
    with pytest.raises(ValueError):
        _step("pii", types=["fingerprint"])


PROSE = (
    "The refund policy of the company is simple and it has been the same for many years. "
    "When a customer returns an anvil within fourteen days, the full price is paid back to the card "
    "that was used. We ask that the anvil is packed with care, and that the original receipt is included "
    "with the parcel. Our team checks each return and then sends a short note to say that the money is on "
    "its way to the bank. Most refunds arrive within five working days, although some banks take longer. "
    "If you have a question about a return, write to the support team and they will be glad to help you."
)


def test_quality_keeps_prose_drops_spam_and_records_signals() -> None:
    spam = "buy now " * 200
    step = _step("quality")
    result = step.apply(_table([PROSE, spam, "Too short."]))
    assert result.drop_reasons is not None and result.drop_reasons[0] is None
    assert result.drop_reasons[1] is not None and result.drop_reasons[2] is not None
    signals = result.table.column("quality_signals").to_pylist()
    assert len(signals[0]) == 30 and signals[0]["gopher_word_count"] == len(PROSE.split())
    assert signals[1]["gopher_top_2gram_char_fraction"] > 0.9  # "buy now" repeated
    relaxed = _step("quality", gopher_min_words=1, gopher_min_stop_words=None)
    assert relaxed.params.thresholds().gopher_min_words == 1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown threshold"):
        _step("quality", gopher_min_wrds=3)


def test_normalize_can_add_a_column_with_numbers_dates_and_money_abstracted() -> None:
    step = _step("normalize", normalized_column=True)
    texts = ["Paid $1,200.50 on 2026-03-01 for 3 anvils", "Refund of 45 EUR sent 3 March 2026, ref 77"]
    result = step.apply(_table(texts))
    assert result.table.column("text").to_pylist() == texts
    assert result.table.column("text_normalized").to_pylist() == [
        "paid <MONEY> on <DATE> for <NUM> anvils",
        "refund of <MONEY> sent <DATE>, ref <NUM>",
    ]


def test_normalize_by_default_changes_only_broken_text() -> None:
    code = 'def f(x):\n    """Say “hi”."""\n\tif x:  # two  spaces\r\n        return {"a": 1}\n\n\n\nprint(f(1))\n'
    texts = [code, "AT&amp;T said\r\nhello  there", "\x1b[31mred\x1b[0m text\x07", "The cafÃ© is “open”", "ﬁne ＡＢＣ"]
    step = _step("normalize")
    result = step.apply(_table(texts))
    assert result.table.column("text").to_pylist() == [
        code,  # byte-identical: indentation, tabs, CRLF, blank lines and curly quotes kept
        "AT&amp;T said\r\nhello  there",
        "red text",
        "The café is “open”",  # mojibake repaired, quotes kept
        "ﬁne ＡＢＣ",  # ligatures and full-width letters are text, not damage
    ]
    assert step.counters["mojibake_repaired"] == 1 and step.counters["changed"] == 2
    folded = _step("normalize", fold_quotes=True).apply(_table(["“open” isn’t"])).table.column("text").to_pylist()
    assert folded == ['"open" isn\'t']


def test_normalize_collapses_every_kind_of_horizontal_whitespace() -> None:
    texts = ["a \u00a0 b\u2003c\t\td  e\u3000f", "one two", "x\r\n\n\n\ny"]
    result = _step("normalize", fix_unicode=False, collapse_whitespace=True).apply(_table(texts))
    assert result.table.column("text").to_pylist() == ["a b c d e f", "one two", "x \n\ny"]
