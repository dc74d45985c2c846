"""The typed slot checks of the claim judge, one failure mode of the old word-overlap judge each."""

from __future__ import annotations

import json

import pytest

from keel.evals import ClaimModel, OfflineJudge, OfflineJudgeOptions
from keel.evals._claims import FEATURES, analyse, claim_features, index_contexts, split_atomic_claims, split_clauses


def _checks(claim: str, contexts: list[str]) -> dict[str, float]:
    values, _ = claim_features(claim, index_contexts(contexts, claim), cosine=0.9, coverage=1.0)
    return dict(zip(FEATURES, values, strict=True))


def test_number_words_are_numbers() -> None:
    slots = analyse("The kettle carries a ten-year warranty and costs twenty-six dollars; allow two and a half hours.")
    assert slots.numbers == {"10": {"year"}, "26": {"$"}, "2.5": {"hour"}}
    context = ["The Brava kettle carries a ten-year warranty on the heating element. The lid is covered for two years."]
    assert _checks("The heating element has a 10-year warranty.", context)["number_absent"] == 0
    wrong = _checks("The heating element has a two-year warranty.", context)
    assert wrong["number_misplaced"] == 1  # "two" is in the context, about the lid


def test_opposites_on_a_scale_and_their_negation() -> None:
    context = ["Pets are prohibited in all office buildings. Assistance dogs are permitted on every floor."]
    assert _checks("Pets are permitted in the office buildings.", context)["scale_conflict"] == 1
    assert _checks("Pets are not allowed in the office buildings.", context)["scale_conflict"] == 0
    assert (
        _checks("The Plus plan is cheaper than Basic.", ["The Plus plan is more expensive than Basic."])[
            "scale_conflict"
        ]
        == 1
    )
    for claim, source in [
        ("The lake is south of the town.", "The lake is north of the town."),
        ("The T4 gearbox is automatic.", "The T4 gearbox is manual."),
        ("Turn the handle anticlockwise.", "Turn the handle clockwise."),
    ]:
        assert _checks(claim, [source])["scale_conflict"] == 1, claim


def test_roles_who_beat_whom() -> None:
    context = ["In the final, Rovers beat United 3-1 at Hampden Park."]
    assert _checks("United beat Rovers 3-1 in the final.", context)["role_swap"] == 1
    # The passive and the converse verb keep the roles: no swap, no conflict.
    assert _checks("United were beaten by Rovers in the final.", context)["role_swap"] == 0
    converse = _checks("United lost the final to Rovers.", context)
    assert converse["role_swap"] == 0 and converse["scale_conflict"] == 0


def test_a_negation_in_a_neighbouring_sentence_is_not_the_claims() -> None:
    context = ["Take one tablet every eight hours with food. You cannot drive within two hours of a dose."]
    assert _checks("Take one tablet every 8 hours with food.", context)["polarity_flip"] == 0
    assert _checks("You can drive within two hours of a dose.", context)["polarity_flip"] == 1


def test_an_entity_the_context_gives_another_role() -> None:
    context = ["Ana Ribeiro manages the Lisbon office. Tomas Berg now heads the Oslo team."]
    assert _checks("Tomas Berg manages the Lisbon office.", context)["entity_misplaced"] == 1
    assert _checks("Ana Ribeiro manages the Lisbon office.", context)["entity_misplaced"] == 0
    # A fact split over two sentences, the second naming no one: the name comes from its neighbour.
    split = ["Ticket 4471 was opened about Firefox. Support reproduced the bug on Tuesday."]
    assert _checks("The Firefox bug was reproduced on Tuesday.", split)["entity_misplaced"] == 0


def test_claims_and_clauses() -> None:
    assert split_atomic_claims("Basic costs $12; Plus costs $20. Both have trials.") == [
        "Basic costs $12",
        "Plus costs $20.",
        "Both have trials.",
    ]
    assert split_clauses("The element is guaranteed for 10 years, while the lid gets two years.") == [
        "The element is guaranteed for 10 years",
        "while the lid gets two years.",
    ]


def test_judge_verdicts_on_the_reported_failures() -> None:
    judge = OfflineJudge()
    kettle = ["The Brava kettle carries a ten-year warranty on the heating element. The lid is covered for two years."]
    assert judge.groundedness("The heating element has a 10-year warranty.", kettle).score == 1.0
    assert judge.groundedness("The heating element has a two-year warranty.", kettle).score == 0.0
    match = ["In the 2023 cup final, Rovers beat United 3-1 at Hampden Park."]
    assert judge.groundedness("United beat Rovers 3-1 in the 2023 cup final.", match).score == 0.0
    office = ["Pets are prohibited in all office buildings. Assistance dogs are permitted on every floor."]
    assert judge.groundedness("Pets are permitted in the office buildings.", office).score == 0.0
    assert judge.groundedness("Assistance dogs are permitted on every floor.", office).score == 1.0


def test_claim_model_file_is_checked(tmp_path: pytest.TempPathFactory) -> None:
    shipped = OfflineJudge().model
    assert shipped.features == FEATURES and 0 < shipped.threshold < 1
    assert shipped.meta["trained_by"] == "scripts/train_groundedness.py"
    bad = tmp_path / "model.json"  # type: ignore[operator]
    bad.write_text(json.dumps({**shipped.to_json(), "features": ["cosine"]}))
    from keel.core.errors import ConfigError

    with pytest.raises(ConfigError, match="retrain it"):
        _ = OfflineJudge(OfflineJudgeOptions(model_path=bad)).model
    assert ClaimModel.load(None).coef == shipped.coef


def test_wordnet_opposites_and_synonyms() -> None:
    # Opposites not on the hand-written scales come from WordNet; across a negation they agree.
    context = ["When heated, the alloy expands by about 2 percent."]
    assert _checks("When heated, the alloy shrinks by about 2 percent.", context)["scale_conflict"] == 1
    assert _checks("When heated, the alloy does not shrink.", context)["scale_conflict"] == 0
    assert _checks("When heated, the alloy expands by about 2 percent.", context)["scale_conflict"] == 0
    # A WordNet synonym counts as found: "repair" for "fix" leaves nothing uncovered.
    fixed = _checks("Engineers repair the pump every spring.", ["Engineers fix the pump every spring."])
    assert fixed["clause_coverage"] == 1.0


def test_numbers_restated_and_pronoun_one() -> None:
    leave = ["Annual leave must be requested at least two weeks in advance."]
    assert _checks("Ask for annual leave 14 days in advance.", leave)["number_absent"] == 0
    assert _checks("Ask for annual leave 10 days in advance.", leave)["number_absent"] == 1
    assert "1" not in analyse("A new one was ordered, and no one was home.").numbers
    assert analyse("Take one tablet.").numbers == {"1": {None}}


def test_numbers_bound_to_another_thing() -> None:
    context = ["The course is assessed by a written exam worth 70% and a group project worth 30%."]
    assert _checks("The written exam is worth 30% and the group project 70%.", context)["number_misplaced"] >= 1
    assert _checks("The written exam is worth 70% and the group project 30%.", context)["number_misplaced"] == 0


def test_comparatives_against_the_numbers() -> None:
    plans = ["The Basic plan costs $12 a month. The Plus plan costs $20 a month."]
    assert _checks("The Plus plan is cheaper than the Basic plan.", plans)["scale_conflict"] == 1
    assert _checks("The Basic plan is cheaper than the Plus plan.", plans)["scale_conflict"] == 0
    assert _checks("Plus is more expensive than Basic.", plans)["scale_conflict"] == 0


def test_negation_kept_to_its_clause() -> None:
    context = ["It has not been tested in pregnant women, and children should not receive it."]
    assert _checks("Children can receive the vaccine.", context)["polarity_flip"] == 1
    soup = ["Our tomato soup is made with vegetable stock and contains no dairy."]
    assert _checks("The tomato soup has no dairy in it.", soup)["polarity_flip"] == 0


def test_an_opening_name_said_of_someone_else() -> None:
    context = [
        "Expense claims under 500 pounds are approved by the line manager. "
        "Larger claims go to Priya Nair in finance, who signs them off within five days."
    ]
    assert _checks("Priya Nair approves claims under 500 pounds.", context)["entity_misplaced"] == 1
    assert _checks("Priya Nair signs off larger claims.", context)["entity_misplaced"] == 0


def test_claims_in_unicode_and_odd_input() -> None:
    # Judged without error, whatever the text: empty, symbols only, non-Latin scripts, a lone number.
    for claim in ["", "—", "Привет, мир.", "東京は日本の首都です。", "42", "N/A!!"]:
        values, _ = claim_features(claim, index_contexts(["Tokyo is the capital of Japan."], claim), 0.5, 0.5)
        assert len(values) == len(FEATURES)


def test_generator_never_sees_the_test_split() -> None:
    # The claim model's training data must not contain the held-out cases' contexts or answers.
    import importlib.util
    import random
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location("train_groundedness", root / "scripts" / "train_groundedness.py")
    assert spec and spec.loader
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    rows = train.generate(random.Random(train.SEED))
    texts = {a for a, _, _ in rows} | {c for _, cs, _ in rows for c in cs}
    data = root / "benchmarks" / "data" / "groundedness_handwritten.jsonl"
    held_out = [json.loads(line) for line in data.read_text().splitlines()]
    test = [g for g in held_out if g["split"] == "test"]
    assert len(test) == 50 and {g["split"] for g in held_out} == {"dev", "test"}
    for group in test:
        assert not set(group["contexts"]) & texts
        assert not {a["text"] for a in group["answers"]} & texts
