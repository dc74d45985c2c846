"""Quality signals and rules: each rule fires on a crafted text and not on ordinary prose; values are exact."""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from keel.core.errors import InputError
from keel.curate._quality import (
    BULLETS,
    FINEWEB_END_CHARS,
    SENTENCE_END_CHARS,
    SIGNAL_NAMES,
    STOP_WORDS,
    C4LineReason,
    QualityReason,
    QualityThresholds,
    c4_clean_lines,
    failed_rules,
    quality_signal_columns,
    quality_signals,
    quality_signals_many,
    rule_failures,
    thresholds_from_params,
)
from keel.curate._quality import _sorted_groups as sorted_groups
from keel.curate._quality_signals import _hashed_groups as hashed_groups
from keel.curate._quality_signals import _ordered_groups as ordered_groups

DOCS = Path(__file__).resolve().parents[3] / "docs" / "quality-rules.md"

GOOD_PROSE = """\
The old library stands at the corner of the market square, where it has welcomed readers for more than a \
century. Its walls are built of pale stone that was carried down from the quarry above the river, and the heavy \
oak doors still carry the marks of the carpenters who hung them.

Inside, the reading room is quiet and full of light. Tall windows face the south, so that even in winter the long \
tables are warm by the middle of the morning. Students come to study for their examinations, while older visitors \
prefer the armchairs near the fireplace, where the newspapers are kept.

The collection began with a gift of four hundred books from a local merchant who had travelled widely in his \
youth. Over the years it has grown to include maps of the surrounding valley, letters written by farmers during \
the long drought, and a set of photographs that show the town before the railway arrived.

Last spring the council agreed to repair the roof and to replace the old heating system. The work took several \
months, and for a while the books had to be stored in the school hall across the road. Volunteers carried boxes \
back and forth every evening, and many of them said that they had never realised how much the building meant to \
them until it was closed.
"""

DEFAULTS = QualityThresholds()
PUNCTUATION = "".join(chr(c) for c in range(0x10000) if unicodedata.category(chr(c)).startswith("P"))


def reasons(text: str, **overrides: object) -> list[str]:
    return [str(r) for r in failed_rules(quality_signals(text), thresholds_from_params(overrides))]


def prose_sentences() -> list[str]:
    return re.findall(r"[^.]+\.", GOOD_PROSE.replace("\n", " "))


# --- good prose is kept; every rule can fire ----------------------------------------------------------


def test_good_prose_passes_every_rule_and_keeps_every_line() -> None:
    assert reasons(GOOD_PROSE) == []
    cleaned, removed = c4_clean_lines(GOOD_PROSE)
    assert set(removed.values()) == {0}
    assert cleaned == "\n".join(p for p in GOOD_PROSE.splitlines() if p)


def _crafted() -> dict[QualityReason, tuple[str, dict[str, object]]]:
    sentences = prose_sentences()
    spam = "Buy cheap watches online today and save big on every order."
    long_word = "x" * 1001
    return {
        QualityReason.MIN_CHARS: (GOOD_PROSE, {"min_chars": 10_000}),
        QualityReason.MAX_CHARS: (GOOD_PROSE, {"max_chars": 1_000}),
        QualityReason.GOPHER_MIN_WORDS: ("The cat sat on the mat and then it slept.", {}),
        QualityReason.GOPHER_MAX_WORDS: (GOOD_PROSE, {"gopher_max_words": 100}),
        QualityReason.GOPHER_MIN_MEAN_WORD_LENGTH: (" ".join(["it is on to be of me so"] * 10) + ".", {}),
        QualityReason.GOPHER_MAX_MEAN_WORD_LENGTH: (
            " ".join(["the internationalisation of telecommunications infrastructure"] * 15) + ".",
            {},
        ),
        QualityReason.GOPHER_MAX_HASH_RATIO: (GOOD_PROSE + " #news" * 60, {}),
        QualityReason.GOPHER_MAX_ELLIPSIS_RATIO: (GOOD_PROSE + " well..." * 20 + " so\u2026" * 20, {}),
        QualityReason.GOPHER_MAX_BULLET_LINE_FRACTION: ("\n".join(f"\u2022 {s.strip()}" for s in sentences), {}),
        QualityReason.GOPHER_MAX_ELLIPSIS_LINE_FRACTION: ("\n".join(s.strip()[:-1] + "..." for s in sentences), {}),
        QualityReason.GOPHER_MIN_ALPHA_WORD_FRACTION: (GOOD_PROSE + " 1999 2000 | 42 --" * 40, {}),
        QualityReason.GOPHER_MIN_STOP_WORDS: (re.sub(r"\b(?i:the|be|to|of|and|that|have|with)\b", "", GOOD_PROSE), {}),
        QualityReason.GOPHER_MAX_DUP_LINE_FRACTION: (GOOD_PROSE + "\n".join([spam] * 6), {}),
        QualityReason.GOPHER_MAX_DUP_PARAGRAPH_FRACTION: (GOOD_PROSE + ("\n\n" + spam) * 6, {}),
        QualityReason.GOPHER_MAX_DUP_LINE_CHAR_FRACTION: (GOOD_PROSE + "\n".join([spam] * 10), {}),
        QualityReason.GOPHER_MAX_DUP_PARAGRAPH_CHAR_FRACTION: (GOOD_PROSE + ("\n\n" + spam) * 10, {}),
        QualityReason.GOPHER_MAX_TOP_2GRAM_CHAR_FRACTION: (
            GOOD_PROSE + " great deal" * 120,
            {"gopher_max_top_3gram_char_fraction": None, "gopher_max_top_4gram_char_fraction": None},
        ),
        QualityReason.GOPHER_MAX_TOP_3GRAM_CHAR_FRACTION: (GOOD_PROSE + " a great deal" * 100, {}),
        QualityReason.GOPHER_MAX_TOP_4GRAM_CHAR_FRACTION: (GOOD_PROSE + " not a great deal" * 80, {}),
        **{
            QualityReason(f"gopher_max_dup_{n}gram_char_fraction"): (
                GOOD_PROSE + " " + " ".join(sentences[:2] * 2),
                {f"gopher_max_dup_{m}gram_char_fraction": None for m in range(5, 11) if m != n},
            )
            for n in range(5, 11)
        },
        QualityReason.C4_MIN_SENTENCES: (" ".join(GOOD_PROSE.split()[:60]).rstrip(".") + " and more", {}),
        QualityReason.C4_MAX_WORD_LENGTH: (GOOD_PROSE + " " + long_word, {}),
        QualityReason.C4_NO_LOREM_IPSUM: (GOOD_PROSE + " Lorem Ipsum dolor sit amet.", {}),
        QualityReason.C4_NO_CURLY_BRACKET: (GOOD_PROSE + " Use {name} here.", {}),
        QualityReason.FINEWEB_MIN_LINE_PUNCT_RATIO: ("\n".join(s.strip().rstrip(".") for s in sentences), {}),
        QualityReason.FINEWEB_MAX_SHORT_LINE_RATIO: (GOOD_PROSE + "\n".join(f"Menu item {i}" for i in range(20)), {}),
        QualityReason.FINEWEB_MAX_CHAR_DUP_RATIO: (GOOD_PROSE + "Opening hours are posted at the door.\n" * 2, {}),
        QualityReason.FINEWEB_MAX_LIST_RATIO: ("\n".join(GOOD_PROSE.split()), {}),
    }


CRAFTED = _crafted()


def test_every_reason_has_a_crafted_text() -> None:
    assert set(CRAFTED) == set(QualityReason)


@pytest.mark.parametrize("reason", list(QualityReason))
def test_each_rule_fires_on_its_crafted_text(reason: QualityReason) -> None:
    text, overrides = CRAFTED[reason]
    assert reason in reasons(text, **overrides)


def test_rules_fire_alone_where_the_text_allows_it() -> None:
    # These crafted texts are ordinary prose plus one defect, so only that defect's rule(s) fire.
    assert reasons(*CRAFTED[QualityReason.C4_NO_CURLY_BRACKET][:1]) == ["c4_no_curly_bracket"]
    assert reasons(*CRAFTED[QualityReason.C4_NO_LOREM_IPSUM][:1]) == ["c4_no_lorem_ipsum"]
    assert reasons(*CRAFTED[QualityReason.FINEWEB_MAX_CHAR_DUP_RATIO][:1]) == ["fineweb_max_char_dup_ratio"]
    assert reasons(GOOD_PROSE, min_chars=10_000) == ["min_chars"]


# --- exact values on hand-computed examples -------------------------------------------------------------


def test_duplicate_lines_and_paragraphs_exact() -> None:
    s = quality_signals("a\nb\na\na")
    assert s["gopher_dup_line_fraction"] == 2 / 4  # lines 3 and 4 repeat line 1
    assert s["gopher_dup_line_char_fraction"] == 2 / 7
    assert s["fineweb_char_dup_ratio"] == 2 / 4  # characters without the three newlines
    assert s["gopher_dup_paragraph_fraction"] == 0.0  # one paragraph: no blank line

    text = "x y\n\nx y\n\n  x y  \n\nz"
    s = quality_signals(text)
    assert s["gopher_dup_paragraph_fraction"] == 2 / 4  # compared after stripping
    assert s["gopher_dup_paragraph_char_fraction"] == 6 / len(text)
    assert s["gopher_dup_line_fraction"] == 2 / 4

    text = "a\nb\n\na\nb\n\na\nc"  # multi-line paragraphs: "a\nb" repeats, "a\nc" does not
    s = quality_signals(text)
    assert s["gopher_dup_paragraph_fraction"] == 1 / 3
    assert s["gopher_dup_paragraph_char_fraction"] == len("a\nb") / len(text)


def test_ngram_fractions_exact() -> None:
    s = quality_signals("a b c d e f g a b c d e f g")  # 14 one-character words, the 7-word run twice
    assert s["gopher_top_2gram_char_fraction"] == 4 / 14  # ("a","b") twice, 2 characters each
    assert s["gopher_top_4gram_char_fraction"] == 8 / 14
    assert s["gopher_dup_5gram_char_fraction"] == 7 / 14  # the second run is covered
    assert s["gopher_dup_7gram_char_fraction"] == 7 / 14
    assert s["gopher_dup_8gram_char_fraction"] == 0.0

    # Ties on count go to the longest n-gram; n-grams seen once never count.
    s = quality_signals("aa b aa b c d c d e")
    assert s["gopher_top_2gram_char_fraction"] == 2 * 3 / 11
    assert quality_signals("one two three four")["gopher_top_2gram_char_fraction"] == 0.0

    # Overlapping repeats: "x x x x x x" has its 5-gram at positions 0 and 1, covering word 5 only once.
    s = quality_signals("x x x x x x")
    assert s["gopher_dup_5gram_char_fraction"] == 5 / 6
    assert s["gopher_top_2gram_char_fraction"] == 5 * 2 / 6


def test_word_signals_exact() -> None:
    s = quality_signals("The cat, the dog -- and 42 #tags... THE end\u2026 theory")
    # tokens: The cat, the dog -- and 42 #tags... THE end… theory  (11; "--" is punctuation only)
    assert s["gopher_word_count"] == 10
    assert s["gopher_mean_word_length"] == (3 + 4 + 3 + 3 + 3 + 2 + 8 + 3 + 4 + 6) / 10
    assert s["gopher_alpha_word_fraction"] == 9 / 11  # "--" and "42" have no letter
    assert s["gopher_stop_word_count"] == 4  # The, the, and, THE; not "theory"
    assert s["gopher_hash_ratio"] == 1 / 10
    assert s["gopher_ellipsis_ratio"] == 2 / 10
    assert s["c4_sentence_count"] == 2  # "#tags..." and "end…"
    assert s["c4_max_word_length"] == 8


def test_line_signals_exact() -> None:
    text = "- one\n\u2022 two...\n\nA line that is long enough to count as long.\nshort!\n"
    s = quality_signals(text)
    assert s["gopher_bullet_line_fraction"] == 2 / 4  # blank lines are not lines here
    assert s["gopher_ellipsis_line_fraction"] == 1 / 4
    assert s["fineweb_line_punct_ratio"] == 3 / 4
    assert s["fineweb_short_line_ratio"] == 3 / 4
    assert s["fineweb_list_ratio"] == 5 / 15
    assert s["char_count"] == len(text)


def test_ngram_signals_match_a_brute_force_reference() -> None:
    rng = random.Random(3)
    texts = [" ".join(rng.choices(["a", "bb", "ccc", "d"], k=rng.randint(0, 40))) for _ in range(60)]
    texts += ["", "solo", "a a a a a a a a a a a a"]
    for text, signals in zip(texts, quality_signals_many(texts), strict=True):
        expected = _reference_ngram_signals(text.split())
        assert {k: signals[k] for k in expected} == expected, text


def _reference_ngram_signals(words: list[str]) -> dict[str, float]:
    total = sum(map(len, words)) or 1
    out = {}
    for n in (2, 3, 4):
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        best = max(((c, sum(map(len, g))) for g, c in grams.items() if c >= 2), default=(0, 0))
        out[f"gopher_top_{n}gram_char_fraction"] = best[0] * best[1] / total
    for n in range(5, 11):
        seen, covered = set(), [False] * len(words)
        for i in range(len(words) - n + 1):
            gram = tuple(words[i : i + n])
            if gram in seen:
                covered[i : i + n] = [True] * n
            seen.add(gram)
        out[f"gopher_dup_{n}gram_char_fraction"] = sum(len(w) for w, c in zip(words, covered, strict=True) if c) / total
    return out


def test_every_signal_matches_a_plain_python_reference() -> None:
    rng = random.Random(11)
    pool = [
        "The cat sat.",
        "the cat sat.",
        "- a list item",
        "\u2022 item two...",
        "   ",
        "",
        "Wait\u2026",
        "x" * 31,
        "Lorem ipsum dolor.",
        "{code}",
        "#tag #tag",
        "42 -- |",
        "\u00e9t\u00e9 \u00e0 Paris!",
        "and that is the way of it",
        "She said \u201cyes.\u201d",
        "to be or not to be",
        "  padded line  \r",
    ]
    texts = ["\n".join(rng.choices(pool, k=rng.randint(0, 12))) for _ in range(150)]
    for text, signals in zip(texts, quality_signals_many(texts), strict=True):
        assert signals == _reference_signals(text), text


def _reference_signals(text: str) -> dict[str, float]:
    """The documented definitions, written plainly (slow, obviously right) for comparison."""

    def ratio(num: float, den: float) -> float:
        return num / max(den, 1)

    def category(ch: str) -> str:
        return unicodedata.category(ch)[0]

    tokens = text.split()
    words = [t for t in tokens if any(category(c) not in "PS" for c in t)]
    lines = [line.strip() for line in text.split("\n")]
    nonblank = [line for line in lines if line]
    blocks = [p for p in re.split(r"\n{2,}", "\n".join(lines).strip("\n")) if p]

    def repeats(items: list[str]) -> tuple[int, int]:
        seen: set[str] = set()
        count = chars = 0
        for item in items:
            if item in seen:
                count, chars = count + 1, chars + len(item)
            seen.add(item)
        return count, chars

    dup_lines, dup_line_chars = repeats(nonblank)
    dup_paras, dup_para_chars = repeats(blocks)
    out = {
        "char_count": len(text),
        "gopher_word_count": len(words),
        "gopher_mean_word_length": ratio(sum(map(len, words)), len(words)),
        "gopher_hash_ratio": ratio(text.count("#"), len(words)),
        "gopher_ellipsis_ratio": ratio(sum(t.count("...") + t.count("\u2026") for t in tokens), len(words)),
        "gopher_bullet_line_fraction": ratio(sum(line[0] in BULLETS for line in nonblank), len(nonblank)),
        "gopher_ellipsis_line_fraction": ratio(sum(line.endswith(("...", "\u2026")) for line in nonblank),
                                               len(nonblank)),
        "gopher_alpha_word_fraction": ratio(sum(any(c.isalpha() for c in t) for t in tokens), len(tokens)),
        "gopher_stop_word_count": sum(t.lower().strip(PUNCTUATION) in STOP_WORDS for t in tokens),
        "gopher_dup_line_fraction": ratio(dup_lines, len(nonblank)),
        "gopher_dup_paragraph_fraction": ratio(dup_paras, len(blocks)),
        "gopher_dup_line_char_fraction": ratio(dup_line_chars, len(text)),
        "gopher_dup_paragraph_char_fraction": ratio(dup_para_chars, len(text)),
        **_reference_ngram_signals(tokens),
        "c4_sentence_count": sum(t.rstrip("\"'\u201d\u2019)]").endswith(SENTENCE_END_CHARS) for t in tokens),
        "c4_max_word_length": max(map(len, tokens), default=0),
        "c4_has_lorem_ipsum": "lorem ipsum" in text.lower(),
        "c4_has_curly_bracket": "{" in text,
        "fineweb_line_punct_ratio": ratio(sum(line[-1] in FINEWEB_END_CHARS for line in nonblank), len(nonblank)),
        "fineweb_short_line_ratio": ratio(sum(len(line) <= 30 for line in nonblank), len(nonblank)),
        "fineweb_char_dup_ratio": ratio(dup_line_chars, len(text) - text.count("\n")),
        "fineweb_list_ratio": ratio(text.count("\n"), len(tokens)),
    }  # fmt: skip
    return {name: float(out[name]) for name in SIGNAL_NAMES}


# Words at the edges of the word features' fast paths (issue 18): stop words behind punctuation, capitals and
# look-alikes, dot runs, closers after sentence ends, astral and combining characters, code, a 200K-character line.
EDGE_TEXTS = [
    "",
    " \n \n",
    "(The) THE. tHe... \"and\" 'of' [to]: be, with; that! have? \u212aelvin \u0130s the\u2026 th\u0435 (Cyrillic e)",
    'a.b..c...d....e.....f...... \u2026\u2026 .. ... end.) end?" x.] \u3002 \uff01\u300d done.\u201d',
    "))) ]]] \"'\u201d\u2019)] . ! ? # ## #x {x} { \u0023",
    "emoji \U0001f600. astral \U00010348\U00010348! e\u0301t\u00e9 na\u00efve \u00b6 \u30c6\u30b9\u30c8\u3002",
    "def f(x):\n    return {'a': x}  # code...\n\n\n\tindented\r\n" * 3,
    "x" * 200_000 + ". " + "the " * 3,
    "caf\u00e9 " * 3000,
]


def test_signals_match_the_plain_reference_on_edge_and_real_text(doc_pages: list[Any]) -> None:
    texts = EDGE_TEXTS + [page.text for page in doc_pages[::7]]
    for text, signals in zip(texts, quality_signals_many(texts), strict=True):
        assert signals == _reference_signals(text), text[:80]


@pytest.mark.parametrize("scale", [1, 1 << 55])  # the second cannot be packed into 63 bits: lexsort path
def test_grouping_keeps_each_groups_positions_ascending(scale: int) -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 6, 200).astype(np.int64) * scale
    pos = np.arange(200, dtype=np.int64) * 3
    groups = sorted_groups(keys, pos)
    expected: dict[int, list[int]] = {}
    for key, p in zip(keys.tolist(), pos.tolist(), strict=True):
        expected.setdefault(key, []).append(p)
    runs = [expected[k] for k in sorted(expected)]
    assert groups.pos.tolist() == [p for run in runs for p in run]
    assert groups.first.tolist() == [run[0] for run in runs]
    assert groups.sizes.tolist() == [len(run) for run in runs]


@pytest.mark.parametrize("size", [0, 1, 500])
def test_hashed_groups_number_groups_by_first_occurrence(size: int) -> None:
    keys = np.random.default_rng(size).integers(-3, 40, size).astype(np.int64) * (1 << 40)
    groups = hashed_groups(keys)
    numbering: dict[int, int] = {}
    for key in keys.tolist():
        numbering.setdefault(key, len(numbering))
    assert groups.ids.tolist() == [numbering[k] for k in keys.tolist()]
    assert groups.first.tolist() == [keys.tolist().index(k) for k in numbering]
    assert groups.sizes.tolist() == [keys.tolist().count(k) for k in numbering]


@pytest.mark.parametrize(("size", "scale"), [(0, 1), (1, 1), (500, 1), (500, 1 << 50)])  # the last: too wide to pack
def test_ordered_groups_number_groups_by_key_with_earliest_positions(size: int, scale: int) -> None:
    keys = np.random.default_rng(size).integers(0, 40, size).astype(np.int64) * scale
    groups = ordered_groups(keys)
    listed = keys.tolist()
    distinct = sorted(set(listed)) if scale == 1 else list(dict.fromkeys(listed))  # wide keys: hashed_groups
    assert groups.ids.tolist() == [distinct.index(k) for k in listed]
    assert groups.first.tolist() == [listed.index(k) for k in distinct]
    assert groups.sizes.tolist() == [listed.count(k) for k in distinct]


# --- batches, inputs and edge cases -------------------------------------------------------------------


def test_documents_in_a_batch_do_not_see_each_other() -> None:
    texts = [GOOD_PROSE, GOOD_PROSE, "a\nb\na", "", GOOD_PROSE[:500]]
    assert quality_signals_many(texts) == [quality_signals(t) for t in texts]
    assert quality_signals_many(texts)[1]["gopher_dup_paragraph_fraction"] == 0.0


def test_arrow_input_and_columns() -> None:
    texts = [GOOD_PROSE, "x"]
    columns = quality_signal_columns(pa.chunked_array([pa.array(texts[:1]), pa.array(texts[1:])]))
    assert list(columns) == list(SIGNAL_NAMES)
    assert [{k: float(v[i]) for k, v in columns.items()} for i in range(2)] == quality_signals_many(texts)
    assert quality_signals_many([]) == []
    sliced = pa.array(["skip me", *texts], type=pa.large_string()).slice(1)
    assert quality_signal_columns(sliced)["char_count"].tolist() == [len(t) for t in texts]


def test_bad_inputs_are_input_errors() -> None:
    with pytest.raises(InputError, match="found bytes at index 1"):
        quality_signals_many(["ok", b"bytes"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="surrogates not allowed in the text at index 2"):
        quality_signals_many(["ok", "fine", "lone \ud800 surrogate"])
    with pytest.raises(InputError, match="without nulls"):
        quality_signal_columns(pa.array(["a", None]))


def test_empty_text() -> None:
    s = quality_signals("")
    assert set(s) == set(SIGNAL_NAMES)
    assert all(v == 0.0 for v in s.values())
    assert {"gopher_min_words", "c4_min_sentences", "fineweb_min_line_punct_ratio"} <= set(reasons(""))
    assert quality_signals(" \n\t\n ") == {**s, "char_count": 5.0, "fineweb_list_ratio": 2.0}
    assert c4_clean_lines("") == ("", dict.fromkeys(C4LineReason, 0))


def test_text_without_newlines() -> None:
    one_line = GOOD_PROSE.replace("\n", " ")
    s = quality_signals(one_line)
    assert s["fineweb_list_ratio"] == 0.0
    assert s["fineweb_line_punct_ratio"] == 1.0
    assert s["gopher_dup_line_fraction"] == 0.0
    assert reasons(one_line) == []


def test_unicode() -> None:
    text = (
        "Über\u00a0den Wolken muss die Freiheit wohl grenzenlos sein. \u00c9t\u00e9 \u00e0 Paris.\n"
        "\u041c\u043e\u0441\u043a\u0432\u0430 \u2014 \u0441\u0442\u043e\u043b\u0438\u0446\u0430.\n"
        "\u6771\u4eac\u306f\u5927\u304d\u3044\u3002 \U0001f600 \U0001f600"
    )
    s = quality_signals(text)
    # NBSP separates words as in str.split(); the em dash and the emoji (a symbol) are not words.
    assert s["gopher_word_count"] == len(text.split()) - 3
    assert s["gopher_alpha_word_fraction"] == (len(text.split()) - 3) / len(text.split())
    assert s["char_count"] == len(text)
    assert s["c4_sentence_count"] == 4  # "sein.", "Paris.", "столица.", "東京は大きい。"
    assert s["c4_max_word_length"] == max(map(len, text.split()))
    assert s["gopher_top_2gram_char_fraction"] == 0.0


# --- thresholds ---------------------------------------------------------------------------------------


def test_thresholds_override_and_switch_off() -> None:
    short = " ".join(GOOD_PROSE.split()[:30])
    assert "gopher_min_words" in reasons(short)
    assert "gopher_min_words" not in reasons(short, gopher_min_words=20)
    assert "gopher_min_words" not in reasons(short, gopher_min_words=None)
    assert thresholds_from_params({"gopher_max_hash_ratio": "0.5"}).gopher_max_hash_ratio == 0.5
    assert thresholds_from_params(None) == DEFAULTS


def test_bad_thresholds_name_every_problem() -> None:
    with pytest.raises(InputError) as caught:
        thresholds_from_params({"gopher_min_word": 20, "fineweb_max_list_ratio": -1, "c4_min_sentences": "many"})
    message = str(caught.value)
    assert "unknown threshold 'gopher_min_word' (did you mean 'gopher_min_words'?)" in message
    assert "fineweb_max_list_ratio" in message and "c4_min_sentences" in message


def test_thresholds_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        DEFAULTS.gopher_min_words = 1  # type: ignore[misc]


def test_missing_signal_is_an_input_error() -> None:
    with pytest.raises(InputError, match="gopher_word_count"):
        failed_rules({"char_count": 10.0}, DEFAULTS)


def test_rule_failures_agree_with_failed_rules() -> None:
    texts = [text for text, _ in CRAFTED.values()] + [GOOD_PROSE, ""]
    columns = quality_signal_columns(texts)
    masks = rule_failures(columns, DEFAULTS)
    for i, signals in enumerate(quality_signals_many(texts)):
        assert [r for r, mask in masks.items() if mask[i]] == failed_rules(signals, DEFAULTS)


def test_every_reason_is_a_threshold_and_every_rule_reads_a_signal() -> None:
    fields = set(QualityThresholds.model_fields)
    assert {str(r) for r in QualityReason} <= fields
    line_fields = {"c4_min_words_per_line", "c4_drop_no_terminal_punct_lines", "c4_drop_javascript_lines",
                   "c4_drop_policy_lines"}  # fmt: skip
    assert fields - {str(r) for r in QualityReason} == line_fields
    assert len(set(SIGNAL_NAMES)) == len(SIGNAL_NAMES)


def test_docs_describe_every_signal_threshold_and_reason() -> None:
    text = DOCS.read_text()
    for name in [*SIGNAL_NAMES, *QualityThresholds.model_fields, *(str(r) for r in C4LineReason)]:
        assert f"`{name}`" in text, f"docs/quality-rules.md does not mention {name}"


# --- C4 line cleaning ---------------------------------------------------------------------------------


def test_c4_clean_lines_counts_each_reason() -> None:
    text = "\n".join(
        [
            "A perfectly ordinary sentence that ends well.",
            "Please enable JavaScript in your browser to continue.",
            "Read our privacy policy before you sign up today.",
            "Home",
            "Too few words here.",
            "This line has no terminal punctuation at all",
            "This line trails off into an ellipsis...",
            "He said it was " + "y" * 1001 + " long.",
            "A long line of many short words. " * 40,
            "",
            '"Quoted lines that end in a quotation mark are fine."',
        ]
    )
    cleaned, removed = c4_clean_lines(text)
    assert cleaned.splitlines() == [
        "A perfectly ordinary sentence that ends well.",
        ("A long line of many short words. " * 40).strip(),
        '"Quoted lines that end in a quotation mark are fine."',
    ]
    assert removed == {
        "c4_line_too_long_word": 1,
        "c4_line_no_terminal_punct": 3,
        "c4_line_too_few_words": 1,
        "c4_line_javascript": 1,
        "c4_line_policy": 1,
    }


def test_c4_clean_lines_thresholds() -> None:
    text = "Too few words here.\nJavaScript is a language people use."
    relaxed = thresholds_from_params({"c4_min_words_per_line": 3, "c4_drop_javascript_lines": False})
    assert c4_clean_lines(text, relaxed) == (text, dict.fromkeys(C4LineReason, 0))
    assert c4_clean_lines("no punctuation here at all", thresholds_from_params(
        {"c4_drop_no_terminal_punct_lines": False}))[0] == "no punctuation here at all"  # fmt: skip
