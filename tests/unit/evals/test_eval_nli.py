"""The learned entailment head of the offline groundedness judge (`keel.evals._nli`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keel.core.errors import ConfigError
from keel.evals import OfflineJudge, OfflineJudgeOptions
from keel.evals._nli import N_FEATURES, EntailmentHead, blend, pair_features, shipped_head


def test_the_shipped_head_is_small_and_says_how_it_was_made() -> None:
    head = shipped_head()
    assert head.coef.shape == (N_FEATURES,) and np.isfinite(head.coef).all()
    assert head.meta["trained_by"] == "scripts/train_groundedness_nli.py"
    assert 0.0 <= head.meta["weight"] <= 1.0 and 0.0 < head.meta["threshold"] < 1.0
    path = Path(__file__).resolve().parents[3] / "src" / "keel" / "evals" / "data" / "groundedness_nli.npz"
    assert path.stat().st_size < 100_000


def test_pair_features_read_the_alignment() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(5, 384)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    u = tokens.mean(axis=0) / np.linalg.norm(tokens.mean(axis=0))
    same = pair_features(tokens, tokens, u, u)
    assert same.shape == (N_FEATURES,)
    assert same[-6] == pytest.approx(1.0, abs=1e-5) and same[-1] == pytest.approx(1.0, abs=1e-5)
    other = pair_features(tokens, -tokens, u, -u)
    assert other[-6] < 0.5 and other[-1] == pytest.approx(-1.0, abs=1e-5)
    assert not pair_features(tokens[:0], tokens, u, u).any()


def test_a_head_for_other_features_is_refused(tmp_path: Path) -> None:
    head = shipped_head()
    wrong = EntailmentHead(head.mean[:10], head.scale[:10], head.coef[:10], head.intercept, head.meta)
    wrong.save(tmp_path / "head.npz")
    with pytest.raises(ConfigError, match="expected an entailment head over"):
        EntailmentHead.load(tmp_path / "head.npz")


def test_blend_is_the_rule_model_at_weight_zero() -> None:
    assert blend(0.7, 0.01, 0.0) == 0.7
    assert blend(0.7, 0.7, 0.4) == pytest.approx(0.7)
    assert blend(0.9, 0.1, 0.5) < blend(0.9, 0.9, 0.5)


def test_the_judge_reports_the_heads_verdict_per_claim() -> None:
    context = ["Pets are prohibited in all office buildings. Registered assistance dogs are permitted on every floor."]
    with_head = OfflineJudge(OfflineJudgeOptions(nli_weight=0.5))
    score = with_head.groundedness("Registered assistance dogs are allowed on every floor.", context)
    claim = score.details["claims"][0]
    assert 0.0 <= claim["entailment"] <= 1.0
    without = OfflineJudge(OfflineJudgeOptions(nli_weight=0.0))
    assert (
        without.groundedness("Registered assistance dogs are allowed on every floor.", context).details["claims"][0][
            "entailment"
        ]
        is None
    )


def test_the_heads_training_pairs_hold_no_test_case() -> None:
    import importlib.util
    import json
    import random

    from keel.evals._claims import split_sentences

    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location("train_nli", root / "scripts" / "train_groundedness_nli.py")
    assert spec and spec.loader
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    pairs = train.generate(random.Random(train.SEED), 900, 900)
    assert len(pairs) > 10_000 and {y for _, _, y in pairs} == {0, 1, 2}
    texts = {c for _, c, _ in pairs} | {s for p in {p for p, _, _ in pairs} for s in split_sentences(p)}
    data = root / "benchmarks" / "data" / "groundedness_handwritten.jsonl"
    test = [g for g in map(json.loads, data.read_text().splitlines()) if g["split"] == "test"]
    assert len(test) == 50
    for group in test:
        assert not {s for c in group["contexts"] for s in split_sentences(c)} & texts
        assert not {a["text"] for a in group["answers"]} & texts
