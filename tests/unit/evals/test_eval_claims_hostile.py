"""Each slot check of the claim judge on hostile input, and the judge's accuracy floor on the held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keel.evals import OfflineJudge
from keel.evals._claims import FEATURES, analyse, claim_features, index_contexts, restated
from keel.evals._offline_judge import capped_support

DATA = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "groundedness_handwritten.jsonl"


def _checks(claim: str, contexts: list[str]) -> dict[str, float]:
    values, _ = claim_features(claim, index_contexts(contexts, claim), cosine=0.9, coverage=1.0)
    return dict(zip(FEATURES, values, strict=True))


def test_numbers_in_other_digits_and_words() -> None:
    # Arabic-Indic and full-width digits are the same numbers as ASCII ones.
    assert analyse("It costs ٣ dollars.").numbers == {"3": {"$"}}
    assert analyse("Allow １２ days.").numbers == {"12": {"day"}}
    context = ["The warranty lasts 12 days."]
    assert _checks("The warranty lasts １２ days.", context)["number_absent"] == 0
    assert _checks("The warranty lasts twelve days.", context)["number_absent"] == 0
    assert _checks("The warranty lasts ١٣ days.", context)["number_absent"] == 1
    # Number words with units, scales and fractions.
    assert analyse("a twenty-two-year lease").numbers == {"22": {"year"}}
    assert analyse("4.2 million dollars").numbers == {"4200000": {"$"}}
    assert analyse("for half an hour").numbers == {"0.5": {"hour"}}
    assert "30" in restated(analyse("for half an hour").numbers)["0.5"]
    assert _checks("Output fell by a quarter.", ["Output fell 25% last year."])["number_absent"] == 0
    assert analyse("half as often").numbers == {}


def test_huge_and_near_numbers_stay_distinct() -> None:
    # Floats would make both "inf", or both 1.23457e+06: a changed digit must still count as changed.
    huge = "9" * 400
    assert analyse(f"It lasts {huge} years.").numbers == {huge: {"year"}}
    assert _checks(f"It lasts {huge}9 years.", [f"It lasts {huge} years."])["number_absent"] == 1
    assert _checks(f"It lasts {huge} years.", [f"It lasts {huge} years."])["number_absent"] == 0
    assert _checks("The town has 1,234,568 people.", ["The town has 1,234,567 people."])["number_absent"] == 1
    assert _checks("The town has 1234567 people.", ["The town has 1,234,567 people."])["number_absent"] == 0
    many = " ".join(["billion"] * 60)
    assert len(analyse(f"one {many} stars").numbers) == 1  # overflows a float, counted once, no error


def test_units_and_dates() -> None:
    context = ["The battery holds 15 W for two weeks. The bridge opened on Tuesday in March."]
    assert _checks("The battery holds 15 V for two weeks.", context)["unit_mismatch"] == 1
    assert _checks("The battery holds 15 W for 14 days.", context)["number_absent"] == 0
    assert _checks("The bridge opened on Tuesday in May.", context)["date_mismatch"] == 1
    assert _checks("The bridge opened on Tuesday in March.", context)["date_mismatch"] == 0
    assert _checks("The shop closes at noon.", ["The shop closes at 12pm."])["number_absent"] == 0


def test_entities_roles_and_polarity() -> None:
    parcel = ["Your parcel left our Dublin depot on Tuesday and arrived at the Cork sorting centre on Wednesday."]
    assert _checks("Your parcel left our Cork depot on Tuesday.", parcel)["entity_misplaced"] == 1
    assert _checks("Your parcel left our Dublin depot on Tuesday.", parcel)["entity_misplaced"] == 0
    race = ["Mara Jensen won the marathon, two minutes ahead of Chloe Adair."]
    assert _checks("Chloe Adair beat Mara Jensen in the marathon.", race)["role_swap"] == 1
    assert _checks("Mara Jensen beat Chloe Adair in the marathon.", race)["role_swap"] == 0
    drug = ["Patients must avoid alcohol during treatment and for 48 hours afterwards."]
    assert _checks("Don't drink alcohol while on treatment or for 48 hours after.", drug)["polarity_flip"] == 0
    assert _checks("Patients may drink alcohol during treatment.", drug)["polarity_flip"] == 1
    logs = ["Logs are stored unencrypted for 30 days."]
    assert _checks("Logs are stored encrypted for 30 days.", logs)["scale_conflict"] == 1


def test_scales_with_both_ends_in_one_sentence() -> None:
    river = ["The Esk rises in the western hills and flows east to the sea."]
    assert _checks("Its source is in the hills to the west, and it runs eastward.", river)["scale_conflict"] == 0
    assert _checks("The Esk rises in the eastern hills.", river)["scale_conflict"] == 1
    gym = ["Hotel guests may use the gym free of charge."]
    assert _checks("For hotel guests the gym costs nothing.", gym)["scale_conflict"] == 0
    assert _checks("The Tarn jacket is no longer made in black.", ["Black was discontinued."])["scale_conflict"] == 0


def test_empty_and_odd_texts() -> None:
    judge = OfflineJudge()
    assert judge.groundedness("", ["Anything."]).score == 1.0  # nothing claimed, nothing ungrounded
    assert judge.groundedness("Paris is in France.", []).score == 0.0
    assert judge.groundedness("Paris is in France.", ["", "   "]).score == 0.0
    empty = _checks("It costs 3 dollars at Acme.", [])
    assert empty["number_absent"] == 1 and empty["clause_coverage"] == 0.0
    for claim in ["\u200b", "٣٣٣", "9" * 5000, "—" * 100, "one one one one"]:
        values, _ = claim_features(claim, index_contexts(["One day lasts 24 hours."], claim), 0.5, 0.5)
        assert len(values) == len(FEATURES) and all(np.isfinite(values))


def test_support_is_capped_by_relatedness() -> None:
    assert capped_support(0.9, 1.0, 0.5) == 0.9
    assert capped_support(0.9, 0.75, 0.5) == 0.5
    assert capped_support(0.9, 0.2, 0.5) == 0.0
    assert capped_support(0.4, 0.9, 1.0) == 0.4


@pytest.mark.slow
def test_accuracy_floor_on_the_held_out_split() -> None:
    # A regression guard, far below the measured figures (benchmarks/judges.py --split test, docs/evals.md).
    groups = [json.loads(line) for line in DATA.read_text().splitlines()]
    rows = [(a, g["contexts"]) for g in groups if g["split"] == "test" for a in g["answers"]]
    assert len(rows) == 150
    judge = OfflineJudge()
    judge.prefetch([""] * len(rows), [a["text"] for a, _ in rows], [c for _, c in rows], {"groundedness"})
    scores = {label: [] for label in ("faithful", "contradicting", "unsupported")}
    correct = 0
    for answer, contexts in rows:
        score = judge.groundedness(answer["text"], contexts)
        scores[answer["label"]].append(score.details["min_support"])
        correct += (score.score == 1.0) == (answer["label"] == "faithful")

    def auc(pos: list[float], neg: list[float]) -> float:
        p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
        return float(np.mean((p > n) + 0.5 * (p == n)))

    # Measured 0.773, 0.862 and 0.616 (docs/evals.md); the floors sit well below them.
    assert correct / len(rows) >= 0.68
    assert auc(scores["faithful"], scores["unsupported"]) >= 0.78
    assert auc(scores["faithful"], scores["contradicting"]) >= 0.52


def test_a_common_noun_subject_said_of_another() -> None:
    staff = [
        "Permanent staff receive a company laptop on their first day. "
        "Contractors must use their own devices and are not given company hardware."
    ]
    assert _checks("Contractors receive a company laptop on their first day.", staff)["entity_misplaced"] == 1
    assert _checks("Permanent staff receive a company laptop on their first day.", staff)["entity_misplaced"] == 0
    assert _checks("Contractors bring their own devices.", staff)["entity_misplaced"] == 0
    # A paraphrase's own word for the subject is found nowhere else: not a move.
    pool = ["The pool opens on 1 June. Children under eight must be accompanied by an adult in the water."]
    assert _checks("Kids younger than 8 need an adult with them in the water.", pool)["entity_misplaced"] == 0
