"""The fine-tuned MiniLM cross-encoder of the offline groundedness judge (`keel.evals._crossenc`)."""

from __future__ import annotations

import importlib.util
import json
import random
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from keel.core.errors import ConfigError
from keel.evals import OfflineJudge, OfflineJudgeOptions
from keel.evals._claims import split_sentences
from keel.evals._crossenc import CrossEncoder, build_model, read_meta, save, select_premise, trained_state

ROOT = Path(__file__).resolve().parents[3]


@cache
def _script() -> ModuleType:
    path = ROOT / "scripts" / "train_groundedness_crossenc.py"
    spec = importlib.util.spec_from_file_location("train_crossenc", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_premise_is_the_claims_best_sentences_in_order() -> None:
    sentences = [
        "The Brava kettle carries a warranty.",
        "Rain is expected on Tuesday.",
        "It covers the heating element for ten years.",
    ]
    # The best sentence opens with a pronoun: the one before it comes too, in document order.
    assert select_premise("The heating element is covered for ten years.", sentences) == (
        "Rain is expected on Tuesday. It covers the heating element for ten years."
    )
    # A second sentence sharing at least half as many words joins (a fact split over two sentences).
    assert select_premise("The Brava kettle warranty covers the heating element.", sentences) == (
        "The Brava kettle carries a warranty. It covers the heating element for ten years."
    )
    assert select_premise("Nothing in common here.", sentences) == sentences[0]
    assert select_premise("Anything.", []) == ""
    assert select_premise("", ["Only one."]) == "Only one."


def _untrained(tmp_path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model = build_model()
    path = tmp_path / "crossenc.npz"
    save(path, trained_state(model), {"labels": ["supported", "contradicted", "not_in_context"], "threshold": 0.3,
                                      "weight": 0.0, "max_length": 64})  # fmt: skip
    return path


def test_a_saved_cross_encoder_reloads_and_scores_pairs(tmp_path: Path) -> None:
    path = _untrained(tmp_path)
    assert read_meta(path)["max_length"] == 64
    encoder = CrossEncoder.load(path)
    probabilities = encoder.probabilities([("Pets are prohibited.", "Pets are allowed."), ("A.", "B " * 500)])
    assert probabilities.shape == (2, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert encoder.support([]).shape == (0,)


def test_the_judge_blends_the_cross_encoder_per_claim(tmp_path: Path) -> None:
    path = _untrained(tmp_path)
    context = ["Pets are prohibited in all office buildings. Registered assistance dogs are permitted on every floor."]
    answer = "Registered assistance dogs are allowed on every floor. Pets are banned."
    judge = OfflineJudge(OfflineJudgeOptions(crossenc_weight=0.5, crossenc_path=path, nli_weight=0.0))
    judge.prefetch([""], [answer], [context], {"groundedness"})
    claims = judge.groundedness(answer, context).details["claims"]
    assert len(claims) == 2 and all(0.0 <= c["crossenc"] <= 1.0 for c in claims)
    alone = OfflineJudge(OfflineJudgeOptions(crossenc_weight=1.0, crossenc_path=path, nli_weight=0.0))
    for claim, other in zip(claims, alone.groundedness(answer, context).details["claims"], strict=True):
        # At weight 1 the claim's support is the cross-encoder's, capped by relatedness.
        assert other["support"] <= round(other["crossenc"], 4) + 1e-4
        assert other["crossenc"] == pytest.approx(claim["crossenc"], abs=1e-5)
    without = OfflineJudge(OfflineJudgeOptions(crossenc_weight=0.0, nli_weight=0.0))
    assert without.groundedness(answer, context).details["claims"][0]["crossenc"] is None


def test_a_bad_cross_encoder_file_is_refused(tmp_path: Path) -> None:
    for weight in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="expected crossenc_weight between 0 and 1"):
            OfflineJudge(OfflineJudgeOptions(crossenc_weight=weight))
    with pytest.raises(ConfigError, match="expected a cross-encoder file"):
        CrossEncoder.load(tmp_path / "missing.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="expected a cross-encoder file"):
        CrossEncoder.load(tmp_path / "garbage.npz")
    save(tmp_path / "small.npz", {"classifier.weight": np.zeros((3, 384), dtype=np.float16)}, {})
    with pytest.raises(ConfigError, match="expected a cross-encoder over all-MiniLM-L6-v2"):
        CrossEncoder.load(tmp_path / "small.npz")


def test_paraphrases_keep_numbers_intact() -> None:
    paraphrase = _script().paraphrase
    rng = random.Random(1)
    for _ in range(30):
        text = paraphrase("Python 3.1 rounds 0.1 to non-zero digits and must return 7 items.", rng)
        assert text is None or ("3.1" in text and "0.1" in text and "non-zero" in text)
    assert paraphrase("", rng) is None


def test_the_cross_encoders_training_pairs_hold_no_test_case() -> None:
    script = _script()
    pairs = script.generate(random.Random(script.SEED))
    assert len(pairs) > 30_000 and {y for _, _, y in pairs} == {0, 1, 2}
    texts = {c for _, c, _ in pairs} | {s for p in {p for p, _, _ in pairs} for s in split_sentences(p)}
    data = ROOT / "benchmarks" / "data" / "groundedness_handwritten.jsonl"
    test = [g for g in map(json.loads, data.read_text().splitlines()) if g["split"] == "test"]
    assert len(test) == 50
    for group in test:
        assert not {s for c in group["contexts"] for s in split_sentences(c)} & texts
        assert not {a["text"] for a in group["answers"]} & texts
    # The dev scorer reads the dev split only.
    assert {len(script.dev_cases())} == {225}


def test_no_cross_encoder_ships_so_it_is_off_and_asking_for_it_says_how_to_build_one() -> None:
    # Measured (docs/evals.md): a small dev gain that did not hold on every test figure, so its 20 MB file is
    # not shipped; the judge leaves it out unless asked, and asking without a file names the build script.
    assert not (ROOT / "src" / "keel" / "evals" / "data" / "groundedness_crossenc.npz").exists()
    assert OfflineJudge().crossenc_weight == 0.0
    judge = OfflineJudge(OfflineJudgeOptions(crossenc_weight=0.3, nli_weight=0.0))
    with pytest.raises(ConfigError, match="expected a cross-encoder file") as raised:
        judge.groundedness("Pets are allowed.", ["Pets are prohibited."])
    assert "train_groundedness_crossenc.py" in (raised.value.hint or "")
