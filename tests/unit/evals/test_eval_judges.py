from __future__ import annotations

import json
from pathlib import Path

import pytest
from evals_fakes import FakeOpenAI

from keel.evals import (
    JudgeModelError,
    JudgeParseError,
    LLMJudge,
    LLMJudgeOptions,
    LocalChatClient,
    OfflineJudge,
    calibrate_judge,
    parse_judgement,
    split_claims,
)

LABELLED = Path(__file__).resolve().parents[2] / "data" / "evals" / "groundedness.jsonl"


def _labelled() -> list[dict[str, object]]:
    return [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]


def test_labelled_set_is_varied_and_balanced() -> None:
    cases = _labelled()
    labels = [c["label"] for c in cases]
    assert len(cases) >= 60
    assert 0.4 < labels.count("supported") / len(cases) < 0.6  # 31 supported, 37 unsupported
    kinds = {c["kind"] for c in cases if c["label"] == "unsupported"}
    assert {"number", "entity", "negation", "fabricated", "contradiction"} <= kinds


def test_offline_groundedness_separates_supported_from_unsupported() -> None:
    judge = OfflineJudge()
    cases = _labelled()
    supported, unsupported, correct = [], [], 0
    for case in cases:
        score = judge.groundedness(str(case["answer"]), list(case["contexts"]))  # type: ignore[call-overload]
        (supported if case["label"] == "supported" else unsupported).append(score.score)
        correct += (score.score == 1.0) == (case["label"] == "supported")
    accuracy = correct / len(cases)
    # The claim judge measures 0.765 (52/68) here; the word-overlap judge it replaced reached 0.882
    # with thresholds tuned on this very set, and 0.66 on the hand-written held-out set
    # (benchmarks/judges.py), where the claim judge reaches 0.75. docs/evals.md gives both.
    assert accuracy >= 0.75
    assert sum(supported) / len(supported) > sum(unsupported) / len(unsupported) + 0.4


def test_offline_groundedness_explains_each_claim() -> None:
    judge = OfflineJudge()
    contexts = ["The recommended adult dose is 500 mg every six hours. Do not take more than 4 grams in 24 hours."]
    score = judge.groundedness("Adults take 500 mg every six hours. The tablets are made by Bayer.", contexts)
    claims = score.details["claims"]
    assert [c["supported"] for c in claims] == [True, False]
    assert score.score == 0.5 and score.details["min_support"] == claims[1]["support"]
    assert claims[1]["checks"]["entity_absent"] == 1.0  # "Bayer" is in no context
    assert claims[0]["clauses"][0]["sentence"] == "The recommended adult dose is 500 mg every six hours."
    wrong = judge.groundedness("The recommended adult dose is 900 mg every six hours.", contexts)
    assert wrong.score == 0.0 and wrong.details["claims"][0]["checks"]["number_absent"] == 1.0
    assert judge.groundedness("", contexts).score == 1.0
    assert judge.groundedness("Anything.", []).score == 0.0


def test_offline_relevance_scores() -> None:
    judge = OfflineJudge()
    question = "How long is the warranty on routers?"
    relevant = judge.context_relevance(question, ["All routers come with a two-year limited warranty."])
    irrelevant = judge.context_relevance(question, ["Giant pandas eat bamboo in the mountains of China."])
    assert relevant.score > irrelevant.score + 0.3
    on_topic = judge.answer_relevance(question, "The routers have a two-year warranty.")
    off_topic = judge.answer_relevance(question, "Bananas are rich in potassium.")
    assert on_topic.score > off_topic.score + 0.3
    assert judge.answer_relevance(question, "  ").score == 0.0


def test_split_claims() -> None:
    assert split_claims("Paris is the capital. It has 2.1 million people! Nice?") == [
        "Paris is the capital.",
        "It has 2.1 million people!",
        "Nice?",
    ]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"score": 0.8, "reason": "mostly"}', 0.8),
        ('Here you go:\n```json\n{"score": "0.25"}\n```', 0.25),
        ('{"verdict": "unsupported"}', 0.0),
        ("Score: 7/10", 0.7),
        ("I'd say 85%.", 0.85),
        ("Rating: 4", 0.4),
        ("Yes, the answer is supported.", 1.0),
        ("Verdict: not supported.", 0.0),
        ("I am unsure how to grade this.", None),
        ("No. The context says otherwise.", 0.0),
        ("no idea, sorry", None),
        ("", None),
    ],
)
def test_parse_judgement(reply: str, expected: float | None) -> None:
    assert parse_judgement(reply) == expected


def test_llm_judge_retries_past_errors_and_malformed_replies(fake_openai: FakeOpenAI) -> None:
    fake_openai.scripts["judge"] = [500, "", "Hmm, let me think about { this", '{"score": 0.9, "reason": "ok"}']
    options = LLMJudgeOptions(base_url=fake_openai.base_url, model="judge", max_attempts=3, temperature=0.0)
    with LLMJudge(options) as judge:
        score = judge.groundedness("Paris is in France.", ["Paris is the capital of France."])
    assert score.score == 0.9 and score.judge == "llm"
    details = score.details
    assert details["attempts"] == 3  # the 500 is retried by the HTTP client, then two unparseable replies
    assert details["model"] == "judge" and details["prompt"] == "builtin:groundedness@v2"
    assert details["served_model"] == "judge"
    assert details["sampling"] == {"temperature": 0.0, "max_tokens": 128, "seed": 0}
    assert len(details["prompt_sha256"]) == 64 and details["raw"] == '{"score": 0.9, "reason": "ok"}'
    sent = fake_openai.requests[-1]
    assert sent["temperature"] == 0.0 and sent["seed"] == 0
    assert "Paris is the capital of France." in sent["messages"][0]["content"]


def test_llm_judge_gives_up_with_a_clear_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.default["judge"] = "I cannot grade this."
    options = LLMJudgeOptions(base_url=fake_openai.base_url, model="judge", max_attempts=2)
    with LLMJudge(options) as judge, pytest.raises(JudgeParseError, match="2 replies without one"):
        judge.answer_relevance("Q?", "A.")
    assert len(fake_openai.requests) == 2


def test_llm_judge_custom_prompt_is_recorded(fake_openai: FakeOpenAI) -> None:
    fake_openai.default["judge"] = "Relevant: yes"
    options = LLMJudgeOptions(
        base_url=fake_openai.base_url,
        model="judge",
        prompts={"context_relevance": "Q: {question}\nC: {contexts}\nRelevant?"},
        prompt_refs={"context_relevance": "ctx-judge@v2"},
    )
    with LLMJudge(options) as judge:
        score = judge.context_relevance("Why?", ["Because."])
    assert score.score == 1.0 and score.details["prompt"] == "ctx-judge@v2"
    assert fake_openai.requests[-1]["messages"][0]["content"] == "Q: Why?\nC: [1] Because.\nRelevant?"


def test_prefetch_batches_embeddings_without_changing_scores() -> None:
    cases = _labelled()[:12]
    plain, batched = OfflineJudge(), OfflineJudge()
    batched.prefetch(
        [str(c["question"]) for c in cases],
        [str(c["answer"]) for c in cases],
        [list(c["contexts"]) for c in cases],  # type: ignore[call-overload]
    )
    cached = len(batched._cache)
    for case in cases:
        answer, contexts, question = str(case["answer"]), list(case["contexts"]), str(case["question"])  # type: ignore[call-overload]
        assert batched.groundedness(answer, contexts).score == plain.groundedness(answer, contexts).score
        assert batched.answer_relevance(question, answer).score == pytest.approx(
            plain.answer_relevance(question, answer).score, abs=1e-5
        )
    assert len(batched._cache) == cached  # everything needed was embedded up front


def test_llm_judge_pinned_model_refuses_another(fake_openai: FakeOpenAI) -> None:
    fake_openai.default["gpt-judge-2024-08-06"] = '{"score": 1}'
    fake_openai.served["gpt-judge-2024-08-06"] = "gpt-judge-2025-01-01"
    options = LLMJudgeOptions(base_url=fake_openai.base_url, model="gpt-judge-2024-08-06", pin_model=True)
    with LLMJudge(options) as judge, pytest.raises(JudgeModelError, match="gpt-judge-2025-01-01"):
        judge.groundedness("A.", ["A."])
    unpinned = LLMJudgeOptions(base_url=fake_openai.base_url, model="gpt-judge-2024-08-06")
    with LLMJudge(unpinned) as judge:
        assert judge.groundedness("A.", ["A."]).details["served_model"] == "gpt-judge-2025-01-01"


def test_calibration_against_the_offline_judge(fake_openai: FakeOpenAI) -> None:
    context = ["All Keel routers come with a two-year limited warranty."]
    cases = [
        ("How long?", "Keel routers have a two-year warranty.", context),
        ("How long?", "Keel routers have a five-year warranty.", context),
        ("How long?", "Keel routers come with a two-year limited warranty.", context),
        ("How long?", "The warranty is made by Bayer in Munich.", context),
    ]
    fake_openai.scripts["judge"] = ['{"score": 1}', '{"score": 0.2}', "Yes", "No."]
    with LLMJudge(LLMJudgeOptions(base_url=fake_openai.base_url, model="judge")) as judge:
        calibration = calibrate_judge(judge, OfflineJudge(), cases)
    assert calibration.n == 4 and calibration.agreement == 1.0 and calibration.kappa == 1.0
    assert calibration.pearson > 0.9 and calibration.judge["prompt"] == "builtin:groundedness@v2"
    assert calibration.to_json()["judge"]["served_model"] == "judge"

    # A case the judge scores in no attempt is left out and listed; the others keep their figures.
    fake_openai.scripts["judge-2"] = ['{"score": 1}', "Hmm.", "Let me think.", "Well.", "Yes", "No."]
    done: list[tuple[int, int]] = []
    options = LLMJudgeOptions(base_url=fake_openai.base_url, model="judge-2", max_attempts=3)
    with LLMJudge(options) as judge:
        calibration = calibrate_judge(judge, OfflineJudge(), cases, on_case=lambda i, n: done.append((i, n)))
    assert calibration.unscored == (1,) and calibration.n == 3 and calibration.agreement == 1.0
    assert calibration.to_json()["unscored"] == [1] and done == [(1, 4), (2, 4), (3, 4), (4, 4)]
    fake_openai.scripts["judge-3"] = ["Hmm."] * 12
    with LLMJudge(LLMJudgeOptions(base_url=fake_openai.base_url, model="judge-3")) as judge:
        with pytest.raises(JudgeParseError, match="scored none"):
            calibrate_judge(judge, OfflineJudge(), cases)


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first user of the session's SmolLM2 load (~20 CPU-s): slow on a busy 2-core machine
@pytest.mark.usefixtures("smollm2_once")  # the GGUF dequantised once a session (tests/conftest.py)
def test_local_smollm2_judge_runs_offline() -> None:
    client = LocalChatClient.smollm2()
    options = LLMJudgeOptions(base_url="local", model=client.name, max_tokens=24, max_attempts=3)
    judge = LLMJudge(options, client=client)
    try:
        score = judge.groundedness("Paris is in France.", ["Paris is the capital of France."])
    except JudgeParseError:
        pytest.fail("SmolLM2 gave no parseable score in 3 attempts")
    assert 0.0 <= score.score <= 1.0 and score.details["served_model"].startswith("smollm2-135m-instruct")


def test_a_suite_judge_spec_pins_the_model(fake_openai: FakeOpenAI) -> None:
    from keel.evals import make_judge
    from keel.evals._suite import JudgeSpec

    fake_openai.default["gpt-judge-2024-08-06"] = '{"score": 1}'
    fake_openai.served["gpt-judge-2024-08-06"] = "gpt-judge-2025-01-01"
    spec = JudgeSpec(kind="llm", base_url=fake_openai.base_url, model="gpt-judge-2024-08-06", pin_model=True)
    judge = make_judge(spec)
    with pytest.raises(JudgeModelError, match="gpt-judge-2025-01-01"):
        judge.groundedness("A.", ["A."])
    judge.close()
    unpinned = make_judge(spec.model_copy(update={"pin_model": False}))
    assert unpinned.groundedness("A.", ["A."]).details["served_model"] == "gpt-judge-2025-01-01"
    unpinned.close()
