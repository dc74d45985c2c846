from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from evals_fakes import FakeOpenAI

from keel.core.errors import ConfigError, InputError
from keel.data import commit_version
from keel.evals import compare_results, gate, get_result, list_results, load_suite, parse_suite, run_suite
from keel.registry import alias_model, create_prompt, get_run, model_history, register_model
from keel.store import Store, walk

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago", "Cuba": "Havana",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Greece": "Athens",
    "Turkey": "Ankara", "India": "New Delhi", "China": "Beijing", "Canada": "Ottawa", "Mexico": "Mexico City",
    "Brazil": "Brasilia", "Ireland": "Dublin", "Portugal": "Lisbon", "Austria": "Vienna", "Hungary": "Budapest",
    "Denmark": "Copenhagen", "Belgium": "Brussels", "Ghana": "Accra", "Nepal": "Kathmandu", "Iran": "Tehran",
}  # fmt: skip


def _question(country: str) -> str:
    return f"What is the capital of {country}?"


def _serve_models(fake: FakeOpenAI) -> None:
    """`good` and `same` answer every question right; `bad` gets 12 of 30 wrong."""
    right = {_question(c): f"{city}" for c, city in CAPITALS.items()}
    fake.answers["good"] = dict(right)
    fake.answers["same"] = dict(right)
    fake.answers["bad"] = {q: ("Springfield" if i % 5 < 2 else a) for i, (q, a) in enumerate(right.items())}


def _suite(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "capitals",
        "cases": [
            {"id": c, "input": _question(c), "expected": city, "contexts": [f"The capital of {c} is {city}."]}
            for c, city in CAPITALS.items()
        ],
        "subject": {"kind": "endpoint", "base_url": fake.base_url, "model": "good"},
        "metrics": [
            {"name": "exact_match", "threshold": 0.8},
            {"name": "chrf"},
            {"name": "toxicity", "threshold": 0.0},
        ],
        "seed": 0,
        "resamples": 500,
    }
    data.update(overrides)
    return data


def test_suite_errors_are_all_reported_with_their_paths(tmp_path: Path) -> None:
    bad = {
        "name": "bad name!",
        "cases": [{"input": "q", "expekted": "a"}],
        "subject": {"kind": "endpoint", "model": "m"},
        "metrics": [{"name": "blue"}],
    }
    with pytest.raises(ConfigError) as info:
        parse_suite(bad, "suite.yaml")
    message = str(info.value)
    assert "4 problem(s)" in message
    for path in ("name:", "cases.0.expekted:", "subject.endpoint.base_url:", "metrics.0.name:"):
        assert path in message
    with pytest.raises(ConfigError, match="exactly one source of cases"):
        parse_suite(
            {
                **bad,
                "name": "ok",
                "cases": [],
                "subject": {"kind": "model", "model": "m"},
                "metrics": [{"name": "bleu"}],
            }
        )
    file = tmp_path / "s.yaml"
    file.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="eval suite .*s.yaml: expected YAML; line 1, column 16"):
        load_suite(file)
    with pytest.raises(ConfigError, match="eval suite .*missing.yaml: expected a file"):
        load_suite(tmp_path / "missing.yaml")


def test_run_stores_scores_aggregates_and_lineage(store: Store, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    _serve_models(fake_openai)
    file = tmp_path / "suite.yaml"
    file.write_text(yaml.safe_dump(_suite(fake_openai)))
    result = run_suite(store, load_suite(file))
    assert result.passed
    em = result.aggregates["exact_match"]
    assert (em.mean, em.low, em.high, em.n) == (1.0, 1.0, 1.0, 30)
    assert result.aggregates["toxicity"].mean == 0.0 and not result.aggregates["toxicity"].higher_is_better
    assert fake_openai.requests[0]["temperature"] == 0.0 and fake_openai.requests[0]["seed"] == 0

    loaded = get_result(store, result.node)
    assert loaded.to_json(with_cases=True) == result.to_json(with_cases=True)
    assert loaded.values("chrf") == result.values("chrf")
    assert [r.id for r in list_results(store, suite="capitals")] == [result.id]
    with store.db.read() as conn:
        upstream = {hit.node for hit in walk(conn, result.node, "upstream")}
    assert upstream == {f"endpoint:good@{fake_openai.base_url}", f"run:{result.run_id}"}
    with store.db.read() as conn:
        run = get_run(conn, str(result.run_id))
    assert run.kind == "eval" and run.status == "finished" and run.params["suite"] == "capitals"
    assert run.metrics["exact_match"] == 1.0 and run.env["seed"] == 0
    with pytest.raises(InputError, match="ULID"):
        get_result(store, "nope")


def test_gate_passes_an_equal_candidate_and_fails_a_degraded_one(store: Store, fake_openai: FakeOpenAI) -> None:
    _serve_models(fake_openai)
    suite = parse_suite(_suite(fake_openai))
    equal = gate(store, suite, "good", "same")
    assert equal.passed and equal.reasons == []
    assert {c.metric: c.test.p_value for c in equal.comparisons} == {"exact_match": 1.0, "chrf": 1.0, "toxicity": 1.0}

    degraded = gate(store, suite, equal.baseline.id, "bad")  # a stored result as the baseline
    assert not degraded.passed
    by_metric = {c.metric: c for c in degraded.comparisons}
    assert by_metric["exact_match"].regression and by_metric["exact_match"].test.delta == pytest.approx(-0.4)
    assert by_metric["exact_match"].test.p_value < 0.01
    assert not by_metric["toxicity"].regression
    assert any("exact_match regressed" in r for r in degraded.reasons)
    assert any("misses its threshold 0.8" in r for r in degraded.reasons)
    markdown = degraded.to_markdown()
    assert "## Eval gate FAILED" in markdown and "| exact_match | 1.0000 | 0.6000 | -0.4000" in markdown
    assert degraded.to_json()["passed"] is False

    # A drop smaller than min_delta is tolerated; the permutation test agrees on significance.
    tolerant = compare_results(degraded.baseline, degraded.candidate, min_delta=0.5, method="paired-permutation")
    exact = {c.metric: c for c in tolerant}["exact_match"]
    assert not exact.regression and exact.test.method == "paired-permutation" and exact.test.p_value < 0.01

    # Comparing in the other direction shows an improvement, not a regression.
    reverse = compare_results(degraded.candidate, degraded.baseline)
    assert {c.metric: c.improvement for c in reverse}["exact_match"]


def test_evidence_for_an_alias_move(store: Store, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    _serve_models(fake_openai)
    result = run_suite(store, parse_suite(_suite(fake_openai)))
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    register_model(store, "chat", model_dir)
    alias_model(store, "chat", "production", 1, reason="passed capitals", evidence=result.node)
    assert model_history(store, "chat")[-1].evidence == f"eval-result:{result.id}"


def test_cases_from_a_dataset_version_and_a_prompt_subject(store: Store, fake_openai: FakeOpenAI) -> None:
    rows = {
        "id": ["a", "b"],
        "input": ["France", "Japan"],
        "expected": ["Paris", "Tokyo"],
        "contexts": [["The capital of France is Paris."], ["The capital of Japan is Tokyo."]],
        "labels": ["eu", "asia"],
        "metadata": ['{"lang": "en"}', '{"lang": "en"}'],
    }
    version, _ = commit_version(store, "capital-cases", pa.table(rows))
    create_prompt(store, "ask", "What is the capital of {{ input }}?", variables=["input"])
    fake_openai.answers["good"] = {_question("France"): "Paris", _question("Japan"): "Kyoto"}
    suite = parse_suite(
        {
            "name": "capitals-ds",
            "dataset": version.ref,
            "subject": {
                "kind": "prompt",
                "prompt": "ask@v1",
                "target": {"kind": "endpoint", "base_url": fake_openai.base_url, "model": "good"},
            },
            "metrics": [{"name": "exact_match"}, {"name": "groundedness"}, {"name": "answer_relevance"}],
        }
    )
    result = run_suite(store, suite)
    assert result.dataset == version.ref
    assert result.values("exact_match") == [1.0, 0.0]
    assert result.values("groundedness") == [1.0, 0.0]  # "Kyoto" is a name in no context
    assert result.cases[0].metadata == {"lang": "en"} and result.cases[1].contexts == (
        "The capital of Japan is Tokyo.",
    )
    assert get_result(store, result.id).scores["groundedness"][1].details["judge"] == "offline"
    with store.db.read() as conn:
        upstream = {hit.node: hit.edge_kind for hit in walk(conn, result.node, "upstream", depth=1)}
    assert upstream == {
        version.node: "evaluated_on",
        "prompt-version:ask@v1": "evaluated",
        f"endpoint:good@{fake_openai.base_url}": "evaluated",
        f"run:{result.run_id}": "produced",
    }


def test_llm_judge_in_a_suite_records_prompt_version_and_sampling(store: Store, fake_openai: FakeOpenAI) -> None:
    _serve_models(fake_openai)
    create_prompt(
        store,
        "grounded-judge",
        'Context: {{ contexts }}\nAnswer: {{ answer }}\nReply {"score": 0..1}.',
        variables=["contexts", "answer"],
    )
    fake_openai.scripts["judge"] = ["no idea", '{"score": 1}'] + ['{"score": 0.5}'] * 29
    data = _suite(fake_openai, metrics=[{"name": "groundedness", "threshold": 0.5}])
    data["judge"] = {
        "kind": "llm",
        "base_url": fake_openai.base_url,
        "model": "judge",
        "temperature": 0.0,
        "seed": 3,
        "prompts": {"groundedness": "grounded-judge@v1"},
    }
    result = run_suite(store, parse_suite(data))
    assert result.values("groundedness") == [1.0] + [0.5] * 29
    stored = get_result(store, result.id).scores["groundedness"][0].details
    assert stored is not None
    assert stored["judge"] == "llm" and stored["model"] == "judge" and stored["prompt"] == "grounded-judge@v1"
    assert stored["attempts"] == 2 and stored["sampling"] == {"temperature": 0.0, "max_tokens": 128, "seed": 3}
    judge_requests = [r for r in fake_openai.requests if r["model"] == "judge"]
    assert judge_requests[0]["messages"][0]["content"].startswith("Context: [1] The capital of France is Paris.")


def test_the_suite_in_the_docs_is_valid() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "evals.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    suite = parse_suite(yaml.safe_load(block), "docs/evals.md")
    assert suite.dataset == "support-cases@v3" and [m.name for m in suite.metrics][-1] == "toxicity"
    assert suite.digest() == parse_suite(yaml.safe_load(block)).digest()
