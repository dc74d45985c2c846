"""The batch predictor gives fastText's own answers, label and float32 probability, bit for bit.

keel.curate._fasttext_batch reimplements lid.176's prediction in numpy for speed (issue 18); every test here
asks fastText itself (`predict(line + "\\n", 1, 0.0)`, the plain per-text path) and compares exactly, on text
chosen to reach each branch: multi-byte characters in n-grams longer than 4 bytes, astral characters, every
fastText separator, words fastText takes no n-grams of, empty and blank lines, long words and long lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import keel.curate._langid as langid
from keel.curate._fasttext_batch import BatchPredictor
from keel.curate._langid import LanguageDetector, _lite_model_path, _top


@pytest.fixture(scope="module")
def fasttext_model() -> Any:
    import fasttext  # type: ignore[import-untyped]

    return fasttext.load_model(str(_lite_model_path()))


@pytest.fixture(scope="module")
def predictor() -> BatchPredictor:
    loaded = BatchPredictor.load(_lite_model_path())
    assert loaded is not None
    return loaded


def _fasttext(model: Any, lines: list[str]) -> list[tuple[str, float]]:
    out = []
    for line in lines:
        ((prob, label),) = model.f.predict(line + "\n", 1, 0.0, "strict")
        out.append((label, float(prob)))
    return out


HARD = [
    "",
    " ",
    "   \t  ",
    "a",
    "Where is my parcel? It is two weeks late.",
    "Wann wird meine Bestellung endlich verschickt?",
    "THE PARCEL IS LATE AGAIN",
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u00b6 na\u00efve \u2014 \u201cquoted\u201d \u2018text\u2019",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002\u4e2d\u6587\u53e5\u5b50\u3002",  # 3-byte characters only
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u042d\u0442\u043e \u0442\u0435\u0441\u0442.",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd",
    "emoji \U0001f600\U0001f600x astral \U00010348\U00010348 mixed a\U0001f600b\u00e9c",
    "e\u0301 combining acute, \ufeffBOM, \u00a0no-break\u2009thin space",
    "separators\x00NUL\rCR\tTAB\x0bVT\x0cFF  double  space ",
    "\x1c\x1d\x1e\x1f are not fastText separators \x85 nor NEL",
    "__label__en is a label, not a word; so is __label__xx and __label__",
    "a</s>b </s> the end-of-line word written out </s>",
    "def f(x):     return {'a': x}  # code with    indentation",
    "x" * 5000,  # one long word
    "\u00e9" * 3000,  # one long word of 2-byte characters
    "word " * 2000,  # a long line
    "lorem ipsum dolor sit \u00e9t\u00e9 " * 8000,  # 216,000 characters: many groups of rows
    "\u00e0\u00e1 \u00e2\u00e3\u00e4 b\u00e5\u00e6 \u00e7d\u00e8e f\u00e9",  # 2-byte characters at every offset
    "I" * 3 + "\u00ee" + "i" * 3,
]


def test_hard_lines_get_fasttexts_answers(predictor: BatchPredictor, fasttext_model: Any) -> None:
    assert predictor.predict(HARD) == _fasttext(fasttext_model, HARD)


def test_any_batch_split_gives_the_same_answers(predictor: BatchPredictor, fasttext_model: Any) -> None:
    expected = _fasttext(fasttext_model, HARD)
    assert [predictor.predict([line])[0] for line in HARD] == expected
    ascii_only = [line for line in HARD if line.isascii()]
    assert predictor.predict(ascii_only) == _fasttext(fasttext_model, ascii_only)
    assert predictor.predict([]) == []


def test_words_shared_across_lines_get_fasttexts_answers(predictor: BatchPredictor, fasttext_model: Any) -> None:
    # A word's rows are found once per batch and copied to each occurrence: the same words before and after a
    # written-out "</s>", beside labels, alone, and every hard line twice in another order.
    lines = [
        "alpha beta </s> gamma caf\u00e9",
        "gamma caf\u00e9 beta alpha",
        "</s> alpha beta",
        "alpha __label__x beta </s> </s> gamma",
        "beta",
        "caf\u00e9 caf\u00e9 caf\u00e9",
        *HARD[::-1],
        *HARD,
    ]
    assert predictor.predict(lines) == _fasttext(fasttext_model, lines)


def test_a_model_of_another_kind_is_not_reproduced(tmp_path: Path) -> None:
    raw = _lite_model_path().read_bytes()
    word_ngrams = 8 + 5 * 4  # after the magic and version: dim, ws, epoch, minCount, neg, wordNgrams
    (tmp_path / "bigrams.ftz").write_bytes(raw[:word_ngrams] + (2).to_bytes(4, "little") + raw[word_ngrams + 4 :])
    (tmp_path / "truncated.ftz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "garbage.ftz").write_bytes(b"not a model")
    for name in ("bigrams.ftz", "truncated.ftz", "garbage.ftz"):
        assert BatchPredictor.load(tmp_path / name) is None, name


def _samples(pages: list[Any]) -> list[str]:
    """300-character samples of every page, from its start and every 1,500 characters on (~6,000)."""
    return [page.text[at : at + 300] for page in pages for at in range(0, max(len(page.text), 1), 1500)]


def test_real_documentation_gets_fasttexts_answers(
    doc_pages: list[Any], predictor: BatchPredictor, fasttext_model: Any
) -> None:
    lines = [langid._one_line(sample) for sample in _samples(doc_pages)]
    assert len(lines) > 5000
    got = [answer for at in range(0, len(lines), 2000) for answer in predictor.predict(lines[at : at + 2000])]
    assert got == _fasttext(fasttext_model, lines)


def test_detect_many_gives_the_plain_per_text_answers_on_real_text(doc_pages: list[Any]) -> None:
    samples = _samples(doc_pages) + HARD + ["\ud800 a lone surrogate in English text", "\u3042\u4e2d\u6587"]
    detector = LanguageDetector()
    langid._ANSWERS.clear()  # nothing answered from an earlier test's cache
    codes, scores = detector.detect_many(samples)
    model = detector._loaded()
    expected = [
        _top(model, s) if langid._LETTER.search(s) else (langid.UNDETERMINED, 0.0)
        for s in (t[: detector.max_chars] for t in samples)
    ]
    assert list(zip(codes, scores, strict=True)) == expected
    assert {"en", "ja", "zh", "ru"} <= set(codes)


def test_the_detector_uses_the_batch_path_after_its_probe_check(fasttext_model: Any) -> None:
    model = LanguageDetector()._loaded()
    assert model._batch is not None  # type: ignore[attr-defined]  # the probes agreed: the fast path is on
    assert model._batch.predict(list(langid._PROBES)) == _fasttext(fasttext_model, list(langid._PROBES))  # type: ignore[attr-defined]
    assert LanguageDetector(languages=["en", "de"])._loaded()._batch is None  # type: ignore[attr-defined]
