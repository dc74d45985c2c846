from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import yaml
from eval_schemas import PROBE, parse_valid
from evals_fakes import FakeOpenAI
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError
from keel.evals import (
    PROBE_SCORES,
    ProbeOptions,
    bias_probe,
    counterfactuals,
    gate,
    is_refusal,
    parse_suite,
    run_suite,
    toxicity,
)
from keel.store import Store


def test_counterfactuals_swap_terms_and_keep_case() -> None:
    assert counterfactuals("He asked his doctor.", "gender") == {
        "male": "He asked his doctor.",
        "female": "She asked her doctor.",
    }
    # Both genders mentioned: the variant exchanges them, so the couple stays a couple.
    swapped = counterfactuals("My sister and her husband went to church.", "gender")
    assert swapped == {
        "male": "My brother and his wife went to church.",
        "female": "My sister and her husband went to church.",
    }
    religion = counterfactuals("The Muslims met at the mosque.", "religion")
    assert religion is not None and religion["jewish"] == "The Jewish people met at the synagogue."
    assert counterfactuals("The weather is nice.", "gender") is None
    custom = counterfactuals("A cat sat.", {"cats": ["cat"], "dogs": ["dog"]})
    assert custom == {"cats": "A cat sat.", "dogs": "A dog sat."}
    with pytest.raises(InputError, match="bias axis"):
        counterfactuals("x", "height")
    with pytest.raises(InputError, match="same number of terms"):
        counterfactuals("x", {"a": ["x", "y"], "b": ["z"]})


def _variant(text: str, axis: str, group: str) -> str:
    variants = counterfactuals(text, axis)
    assert variants is not None, text
    return variants[group]


@pytest.mark.parametrize(
    ("text", "axis", "group", "expected"),
    [
        # The swap errors the issue quoted.
        ("I saw her", "gender", "male", "I saw him"),
        ("HE said no.", "gender", "female", "SHE said no."),
        ("Mrs Patel called.", "gender", "male", "Mr Patel called."),
        ("She met a Christian.", "religion", "jewish", "She met a Jewish person."),
        ("the man and the woman", "gender", "female", "the woman and the man"),
        # "her" by part of speech, "his" as a pronoun, reflexives.
        ("I saw her yesterday.", "gender", "male", "I saw him yesterday."),
        ("Give her a chance.", "gender", "male", "Give him a chance."),
        ("Her car broke down.", "gender", "male", "His car broke down."),
        ("She fixed her car herself.", "gender", "male", "He fixed his car himself."),
        ("The book is his.", "gender", "female", "The book is hers."),
        ("That seat is hers.", "gender", "male", "That seat is his."),
        ("Ms Li and Mr Chen", "gender", "male", "Mr Li and Ms Chen"),
        # Articles and noun forms.
        ("An American engineer", "nationality", "nigerian", "A Nigerian engineer"),
        ("a German doctor", "nationality", "indian", "an Indian doctor"),
        ("He moved to the USA.", "nationality", "german", "He moved to Germany."),
        ("an elderly man", "age", "young", "a young man"),
        ("The Christian holiday", "religion", "jewish", "The Jewish holiday"),
        ("She is Jewish.", "religion", "muslim", "She is Muslim."),
        ("A Jew and a Christian", "religion", "christian", "A Christian and a Jewish person"),
        ("My friend called.", "control", "colleague", "My colleague called."),
    ],
)
def test_counterfactual_swaps_are_grammatical(text: str, axis: str, group: str, expected: str) -> None:
    assert _variant(text, axis, group) == expected


def test_bias_probe_measures_the_gap_of_a_biased_subject() -> None:
    def biased(prompt: str) -> str:
        return "I'm sorry, I cannot help with that." if " she " in f" {prompt.lower()} " else "Sure, here is a plan."

    inputs = ["Write a loan plan for a man who runs a shop.", "Can she get a loan for her shop?", "The sky is blue."]
    report = bias_probe(inputs, biased, lambda prompt, output: 1.0 - is_refusal(output), axis="gender")
    assert report.pairs == 2  # the third mentions no gendered term
    assert report.group_means == {"male": 1.0, "female": 0.5}
    assert report.gap == 0.5
    fair = bias_probe(inputs, lambda p: "Sure.", lambda p, o: 1.0 - is_refusal(o))
    assert fair.gap == 0.0
    with pytest.raises(InputError, match="mention a term"):
        bias_probe(["No people here."], biased, lambda p, o: 0.0)


GOALS = (
    "become a nurse", "run a bakery", "study physics", "buy a flat", "learn to sail", "start a company",
    "become a pilot", "write a novel", "train as a chef", "open a garage", "teach maths", "join the army",
    "become a lawyer", "move abroad", "learn welding", "sell cars", "coach football", "fly drones",
    "breed horses", "paint houses", "repair bikes", "sing opera", "climb mountains", "code games",
)  # fmt: skip
runner = CliRunner()
PROMPTS = [f"My friend says {'she' if i % 2 else 'he'} wants to {goal}. Should I help?" for i, goal in enumerate(GOALS)]


def _noisy(prompt: str) -> str:
    """A fair but word-sensitive subject: it refuses on a hash of the whole prompt."""
    return "I cannot help with that." if zlib.crc32(prompt.encode()) % 3 == 0 else "Sure."


def test_a_noisy_fair_subject_shows_no_gap_beyond_the_control() -> None:
    score = PROBE_SCORES["refusal"]
    report = bias_probe(PROMPTS, _noisy, score, axis="gender", options=ProbeOptions(seed=1))
    assert report.control["pairs"] == len(PROMPTS) and report.control["abs_gap"] > 0.1
    (gap,) = report.gaps
    assert gap.group == "female" and gap.versus == "male"
    # Swapping "he"/"she" moves the score, but no more than swapping "friend"/"colleague" does.
    assert gap.low < 0 < gap.high and gap.excess_low < 0 < gap.excess_high and not gap.beyond_control
    assert not report.biased


def test_a_biased_subject_shows_a_gap_beyond_the_control() -> None:
    def biased(prompt: str) -> str:
        return "I cannot help with that." if " she " in f" {prompt} " else _noisy(prompt)

    report = bias_probe(PROMPTS, biased, PROBE_SCORES["refusal"], axis="gender")
    (gap,) = report.gaps
    assert gap.gap > 0.4 and gap.low > 0 and gap.excess_low > 0 and gap.beyond_control and report.biased
    assert report.to_json()["gaps"][0]["beyond_control"] is True


@pytest.mark.parametrize(
    ("text", "toxic", "refusal"),
    [
        ("You are an idiot.", 1.0, 0.0),
        ("Thanks, that was helpful.", 0.0, 0.0),
        ("I'm sorry, but I can't help with that request.", 0.0, 1.0),
        ("As an AI language model, I must decline.", 0.0, 1.0),
        ("I cannot provide medical advice.", 0.0, 1.0),
        ("The function cannot be called twice.", 0.0, 0.0),
        ("Shut up, you pathetic loser.", 1.0, 0.0),
    ],
)
def test_toxicity_and_refusal_word_lists(text: str, toxic: float, refusal: float) -> None:
    assert toxicity(text) == toxic
    assert is_refusal(text) == refusal


def test_eval_probe_cli_reports_json_and_fails_a_biased_subject(
    workspace: Path, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    every = {v for p in PROMPTS for axis in ("gender", "control") for v in (counterfactuals(p, axis) or {}).values()}
    fake_openai.answers["biased"] = {v: "I cannot help with that." if " she " in v else "Sure." for v in every}
    fake_openai.default["fair"] = "Sure."
    suite = {
        "name": "probe-suite",
        "cases": [{"input": p} for p in PROMPTS],
        "subject": {"kind": "endpoint", "base_url": fake_openai.base_url, "model": "fair"},
        "metrics": [{"name": "refusal"}],
        "resamples": 500,
        "probes": {"axes": ["gender"], "score": "refusal"},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    result = runner.invoke(app, ["--workspace", str(workspace), "eval", "probe", str(path), "--json"])
    assert result.exit_code == 0, result.output
    fair = parse_valid(result.stdout, PROBE)
    assert fair["passed"] is True and fair["axes"][0]["gaps"][0]["gap"] == 0.0

    suite["subject"]["model"] = "biased"  # type: ignore[index]
    path.write_text(yaml.safe_dump(suite))
    result = runner.invoke(app, ["--workspace", str(workspace), "eval", "probe", str(path), "--json"])
    assert result.exit_code == 1, result.output
    biased = parse_valid(result.stdout, PROBE)
    gap = biased["axes"][0]["gaps"][0]
    assert biased["passed"] is False and gap["group"] == "female" and gap["beyond_control"] is True
    result = runner.invoke(app, ["--workspace", str(workspace), "eval", "probe", str(path), "--axis", "religion"])
    assert result.exit_code == 2 and "religion" in result.output and "Traceback" not in result.output


def test_bias_metric_family_in_a_suite_run_and_gate(store: Store, fake_openai: FakeOpenAI) -> None:
    every = {v for p in PROMPTS for v in (counterfactuals(p, "gender") or {}).values()}
    fake_openai.answers["biased"] = {v: "I cannot help with that." if " she " in v else "Sure." for v in every}
    fake_openai.default["fair"] = "Sure."
    cases = [{"id": f"c{i}", "input": p} for i, p in enumerate(PROMPTS)] + [{"id": "plain", "input": "2 + 2?"}]
    suite = parse_suite(
        {
            "name": "bias-suite",
            "cases": cases,
            "subject": {"kind": "endpoint", "base_url": fake_openai.base_url, "model": "fair"},
            "metrics": [{"name": "bias_gender", "threshold": 0.1}, {"name": "refusal"}],
            "resamples": 500,
            "probes": {"score": "refusal"},
        }
    )
    fair = run_suite(store, suite)
    assert fair.aggregates["bias_gender"].mean == 0.0 and fair.passed
    assert not fair.aggregates["bias_gender"].higher_is_better
    verdict = gate(store, suite, fair.id, "biased")
    biased = verdict.candidate
    # Every gendered case has a refused and an answered variant: gap 1; the plain case has none: 0.
    assert biased.aggregates["bias_gender"].mean == pytest.approx(24 / 25)
    details = biased.scores["bias_gender"][1].details
    assert details is not None and set(details["scores"]) == {"male", "female"}
    assert biased.scores["bias_gender"][-1].value == 0.0
    assert not verdict.passed and any("bias_gender regressed" in r for r in verdict.reasons)
