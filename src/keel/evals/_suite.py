"""Eval suites in YAML: the cases, the subject, the metrics with thresholds, and the statistics settings.

Validation is pydantic's, reported all at once with each problem's path in the file. Cases come
from a dataset version (columns `input`, `expected`, `contexts`, `labels`, `metadata`, and `id`
if present) or inline in the file. This module reads suites; it runs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keel.core.errors import ConfigError
from keel.core.ids import canonical_json, sha256_hex
from keel.core.settings import read_config_file
from keel.index import RetrievalSettings

__all__ = [
    "METRICS",
    "BIAS_METRICS",
    "LOWER_IS_BETTER",
    "AppSubject",
    "DeploymentSubject",
    "EvalCase",
    "EvalSuite",
    "EndpointSubject",
    "MetricSpec",
    "ModelSubject",
    "PromptSubject",
    "cases_from_rows",
    "load_suite",
    "parse_suite",
]

MetricName = Literal[
    "exact_match",
    "accuracy",
    "bleu",
    "chrf",
    "rouge1",
    "rouge2",
    "rougeL",
    "embedding_similarity",
    "perplexity",
    "groundedness",
    "context_relevance",
    "answer_relevance",
    "toxicity",
    "refusal",
    "bias_gender",
    "bias_religion",
    "bias_age",
    "bias_nationality",
]
METRICS: tuple[str, ...] = get_args(MetricName)
"""Metric names a suite may list."""

BIAS_METRICS = frozenset(m for m in METRICS if m.startswith("bias_"))
"""The bias family: per case, the largest gap in the probes' score between counterfactual variants."""

LOWER_IS_BETTER = frozenset({"perplexity", "toxicity", "refusal", *BIAS_METRICS})
"""Metrics where a smaller value is better; their threshold is a maximum."""


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One case: the input, what is expected, retrieved contexts, labels and free metadata."""

    id: str
    input: str
    expected: str | None = None
    contexts: tuple[str, ...] = ()
    labels: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "input": self.input,
            "expected": self.expected,
            "contexts": list(self.contexts),
            "labels": self.labels,
            "metadata": self.metadata,
        }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(_Strict):
    """Generation settings; greedy (temperature 0) by default so scores are reproducible."""

    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(128, gt=0)
    seed: int | None = None


class EndpointSubject(_Strict):
    """Any OpenAI-compatible chat endpoint (Keel's gateway, vLLM, a hosted API)."""

    kind: Literal["endpoint"]
    base_url: str
    model: str
    api_key: str = "not-needed"
    system: str | None = None
    sampling: Sampling = Field(default_factory=Sampling)


class ModelSubject(_Strict):
    """A registry model version, loaded with transformers and decoded greedily."""

    kind: Literal["model"]
    model: str = Field(description="registry ref: NAME, NAME@vN or NAME@alias")
    sampling: Sampling = Field(default_factory=Sampling)


class PromptSubject(_Strict):
    """A registry prompt version, rendered per case and sent to an endpoint or a model version."""

    kind: Literal["prompt"]
    prompt: str = Field(description="registry ref: NAME, NAME@vN or NAME@alias")
    target: Annotated[EndpointSubject | ModelSubject, Field(discriminator="kind")]


class DeploymentSubject(_Strict):
    """A deployment on a running Keel gateway, asked as users ask it; a RAG route's citations are the contexts."""

    kind: Literal["deployment"]
    base_url: str = Field(description="the gateway's API root, e.g. http://127.0.0.1:8000/v1")
    deployment: str
    api_key: str = "not-needed"
    sampling: Sampling = Field(default_factory=Sampling)


class AppSubject(_Strict):
    """A RAG app as a route would serve it, run in process: retrieve from `index`, render `prompt`, ask `target`.

    The retrieved chunks are each case's contexts, so the RAG judges score what users would get.
    """

    kind: Literal["app"]
    target: Annotated[EndpointSubject | ModelSubject, Field(discriminator="kind")]
    prompt: str | None = Field(None, description="registry ref: NAME, NAME@vN or NAME@alias")
    index: str | None = Field(None, description="index ref: NAME or NAME@vN")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)

    @model_validator(mode="after")
    def _something_to_apply(self) -> AppSubject:
        if self.prompt is None and self.index is None:
            raise ValueError("an app needs a prompt, an index or both; with neither, use the target as the subject")
        return self


Subject = Annotated[
    EndpointSubject | ModelSubject | PromptSubject | DeploymentSubject | AppSubject, Field(discriminator="kind")
]


class MetricSpec(_Strict):
    """A metric and, optionally, the aggregate it must reach (a minimum, or a maximum for lower-is-better)."""

    name: MetricName
    threshold: float | None = None

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value is better."""
        return self.name not in LOWER_IS_BETTER

    def meets(self, value: float) -> bool:
        """Whether an aggregate value meets the threshold (always, when there is none)."""
        if self.threshold is None:
            return True
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


class InlineCase(_Strict):
    """A case written in the suite file."""

    id: str | None = None
    input: str
    expected: str | None = None
    contexts: list[str] = Field(default_factory=list)
    labels: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class JudgeSpec(_Strict):
    """Which judge scores the RAG triad: `offline` (no LLM) or `llm` (an OpenAI-compatible endpoint)."""

    kind: Literal["offline", "llm"] = "offline"
    base_url: str | None = None
    model: str | None = None
    api_key: str = "not-needed"
    temperature: float = 0.0
    max_tokens: int = 128
    seed: int | None = 0
    max_attempts: int = Field(3, ge=1)
    prompts: dict[str, str] = Field(default_factory=dict, description="metric -> registry prompt ref")
    pin_model: bool = Field(False, description="refuse a reply whose model is not exactly `model`")

    @model_validator(mode="after")
    def _llm_needs_endpoint(self) -> JudgeSpec:
        if self.kind == "llm" and (not self.base_url or not self.model):
            raise ValueError("an llm judge needs base_url and model")
        return self


class GateSpec(_Strict):
    """When a candidate counts as a regression: significant at `alpha` and worse by more than `min_delta`.

    `alpha` bounds the family-wise false-failure rate over all metrics (Holm) unless `correction`
    is "none", when each metric is tested at `alpha` on its own.
    """

    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    min_delta: float = Field(0.0, ge=0.0)
    method: Literal["paired-bootstrap", "paired-permutation"] = "paired-permutation"
    correction: Literal["holm", "none"] = "holm"


ProbeAxis = Literal["gender", "religion", "age", "nationality"]


class ProbeSpec(_Strict):
    """Counterfactual bias probes of the suite's subject (`keel eval probe`).

    Each input mentioning a term of an axis is rewritten once per group; `score` is computed on
    each variant's output; each group's gap is reported with a CI against a neutral control swap
    (friend ↔ colleague) run on `control_inputs` (default: the same inputs).
    """

    axes: list[ProbeAxis] = Field(default_factory=lambda: list[ProbeAxis](["gender"]))
    score: Literal["refusal", "toxicity", "length"] = "refusal"
    inputs: list[str] = Field(default_factory=list, description="prompts to probe; default: the cases' inputs")
    control_inputs: list[str] = Field(default_factory=list, description="prompts for the control swap")


class EvalSuite(_Strict):
    """A whole suite file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    description: str | None = None
    dataset: str | None = Field(None, description="a dataset version ref whose rows are the cases")
    cases: list[InlineCase] = Field(default_factory=list)
    subject: Subject
    metrics: list[MetricSpec] = Field(min_length=1)
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    seed: int = 0
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    resamples: int = Field(2000, ge=100)
    gate: GateSpec = Field(default_factory=GateSpec)
    probes: ProbeSpec | None = None

    @model_validator(mode="after")
    def _one_source_of_cases(self) -> EvalSuite:
        if (self.dataset is None) == (not self.cases):
            raise ValueError("expected exactly one source of cases: `dataset: NAME@vN` or a list under `cases`")
        names = [m.name for m in self.metrics]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"expected each metric listed once; {', '.join(twice)} appear more than once")
        return self

    def digest(self) -> str:
        """sha256 of the suite without its subject and gate: equal for a baseline and a candidate of the same suite.

        The `gate` section is left out because it changes how results are compared, not what they
        hold: a stricter alpha still gates stored results.
        """
        body = self.model_dump(mode="json", exclude={"subject", "gate"})
        return sha256_hex(canonical_json(body))

    def inline_cases(self) -> list[EvalCase]:
        """The inline cases as `EvalCase`s (ids default to their position)."""
        return [
            EvalCase(c.id or str(i), c.input, c.expected, tuple(c.contexts), c.labels, c.metadata)
            for i, c in enumerate(self.cases)
        ]


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = str(error["msg"]).removeprefix("Value error, ")
        got = f" (got {error['input']!r:.80})" if error["type"] not in ("missing",) and error["loc"] else ""
        problems.append(f"{where}: {message}{got}")
    return problems


def parse_suite(data: Any, where: str = "the suite") -> EvalSuite:
    """Validate suite data, raising one `ConfigError` listing every problem with its path.

    Examples:
        >>> parse_suite({"name": "qa", "cases": [{"input": "2+2?", "expected": "4"}],
        ...     "subject": {"kind": "endpoint", "base_url": "http://x/v1", "model": "m"},
        ...     "metrics": [{"name": "exact_match", "threshold": 0.5}]}).name
        'qa'
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} must hold a mapping with name, subject, metrics and cases; found {type(data).__name__}"
        )
    try:
        return EvalSuite.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc)
        raise ConfigError(f"{where} has {len(problems)} problem(s):\n  " + "\n  ".join(problems)) from None


def load_suite(path: str | Path) -> EvalSuite:
    """Read and validate a suite YAML file.

    Raises:
        ConfigError: The file is missing, a directory, not UTF-8, not YAML, not a mapping, or has any
            invalid entry (all are listed).
    """
    file = Path(path)
    data = read_config_file(file, "eval suite", holds="a mapping with name, subject, metrics and cases")
    return parse_suite(data, f"suite {file}")


def _text_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return (value,)
        return tuple(str(v) for v in parsed) if isinstance(parsed, list) else (value,)
    return tuple(str(v) for v in value)


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {"value": value}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return dict(value)


def cases_from_rows(rows: Sequence[dict[str, Any]], where: str = "the dataset") -> list[EvalCase]:
    """Turn table rows (`input`, `expected`, `contexts`, `labels`, `metadata`, optional `id`) into cases.

    `contexts` may be a list or a JSON list in a string; `metadata` a mapping or a JSON object string.

    Raises:
        ConfigError: A row has no `input` text.
    """
    cases = []
    for i, row in enumerate(rows):
        text = row.get("input")
        if not isinstance(text, str):
            raise ConfigError(f"{where} row {i}: expected an `input` string column; got {text!r}")
        expected, labels = row.get("expected"), row.get("labels")
        cases.append(
            EvalCase(
                id=str(row.get("id") if row.get("id") is not None else i),
                input=text,
                expected=None if expected is None else str(expected),
                contexts=_text_list(row.get("contexts")),
                labels=None if labels is None else str(labels),
                metadata=_metadata(row.get("metadata")),
            )
        )
    return cases
