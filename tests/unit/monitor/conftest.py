"""Query corpora for drift tests: the demo's product questions, and off-topic sentences from Python's docs."""

from __future__ import annotations

import glob
import html
import re

import pytest

from keel.pipeline._sample_corpus import _EVAL_QUESTIONS, _TRAIN_QUESTIONS, PRODUCTS


@pytest.fixture(scope="session")
def product_questions() -> list[str]:
    """Every question the demo asks about its products (180)."""
    templates = [q for pair in _TRAIN_QUESTIONS.values() for q in pair] + list(_EVAL_QUESTIONS.values())
    return [t.format(name=p.name) for p in PRODUCTS for t in templates]


@pytest.fixture(scope="session")
def off_topic_sentences() -> list[str]:
    """Sentences of 6-25 words from the Python tutorial's HTML (the python3-doc package)."""
    files = sorted(glob.glob("/usr/share/doc/python3*/html/tutorial/*.html"))
    if not files:
        pytest.fail("the off-topic corpus needs python3-doc (apt-get install python3-doc; .ci/run installs it)")
    sentences: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", f.read())))
        sentences += [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if 6 <= len(s.split()) <= 25]
    return sentences
