"""An LLM judge through any OpenAI-compatible endpoint, recording what produced every score.

Each score carries the judge model, the prompt (its registry ref or a built-in name, and the
digest of the exact text sent), the sampling settings, the raw reply and the number of attempts.
Replies are parsed leniently, since local models rarely return clean JSON: a JSON object with a
`score` or `verdict`, else a number in the text, else a yes/no verdict word. A reply that yields
none of these is asked again, up to `max_attempts`; HTTP failures are retried by the openai client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.core.errors import KeelError
from keel.core.ids import sha256_hex
from keel.evals._offline_judge import JudgeScore

__all__ = ["JudgeParseError", "LLMJudge", "LLMJudgeOptions", "parse_judgement"]

BUILTIN_PROMPTS: dict[str, str] = {
    "groundedness": (
        "You check whether an answer is supported by the context.\n\nContext:\n{contexts}\n\nAnswer:\n{answer}\n\n"
        'Reply with JSON only: {{"score": <0 to 1, the share of the answer supported by the context>, '
        '"reason": "<one sentence>"}}'
    ),
    "context_relevance": (
        "Rate how relevant the context is to the question.\n\nQuestion:\n{question}\n\nContext:\n{contexts}\n\n"
        'Reply with JSON only: {{"score": <0 to 1>, "reason": "<one sentence>"}}'
    ),
    "answer_relevance": (
        "Rate how directly the answer addresses the question.\n\nQuestion:\n{question}\n\nAnswer:\n{answer}\n\n"
        'Reply with JSON only: {{"score": <0 to 1>, "reason": "<one sentence>"}}'
    ),
}
_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(%|/\s*(\d+(?:\.\d+)?))?")
# Bare yes/no count only at the start of a reply ("no idea" is not a verdict); verdict words anywhere.
_BARE = r"\s*(?=[.,!:;]|$)"  # a bare yes/no must stand alone: "No." is a verdict, "no idea" is not
_YES = re.compile(r"^\W*yes\b" + _BARE + r"|\b(supported|grounded|relevant|pass|true|correct)\b", re.I)
_NO = re.compile(
    r"^\W*no\b" + _BARE + r"|\b(unsupported|not supported|ungrounded|irrelevant|not relevant|fail|false|incorrect)\b",
    re.I,
)


class JudgeParseError(KeelError):
    """The judge's replies held no score, even after every retry."""

    exit_code = 1


def _clip(value: float) -> float | None:
    return value if 0.0 <= value <= 1.0 else None


def _from_json(text: str) -> float | None:
    for match in _JSON_OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        for key in ("score", "rating", "value"):
            value = data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return _scale(float(value), None)
            if isinstance(value, str):
                parsed = _from_number(value)
                if parsed is not None:
                    return parsed
        verdict = data.get("verdict")
        if isinstance(verdict, str | bool):
            return _from_verdict(str(verdict))
    return None


def _scale(value: float, denominator: float | None) -> float | None:
    if denominator:
        return _clip(value / denominator)
    if value <= 1.0:
        return _clip(value)
    if value <= 10.0:
        return value / 10.0  # a 0–10 rating
    return _clip(value / 100.0)  # a percentage without the sign


def _from_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    if match.group(2) == "%":
        return _clip(value / 100.0)
    return _scale(value, float(match.group(3)) if match.group(3) else None)


def _from_verdict(text: str) -> float | None:
    no, yes = _NO.search(text), _YES.search(text)
    if no and (not yes or no.start() <= yes.start()):
        return 0.0
    return 1.0 if yes else None


def parse_judgement(text: str) -> float | None:
    """Find a 0–1 score in a judge's reply: JSON first, then a number, then a yes/no verdict.

    Scores on 0–10 or 0–100 scales and `n/m` fractions are rescaled to 0–1.

    Examples:
        >>> parse_judgement('Sure! {"score": 0.8, "reason": "mostly"}')
        0.8
        >>> parse_judgement("I'd rate it 7/10."), parse_judgement("Verdict: not supported.")
        (0.7, 0.0)
    """
    for parse in (_from_json, _from_number, _from_verdict):
        value = parse(text)
        if value is not None:
            return value
    return None


@dataclass(frozen=True, slots=True)
class LLMJudgeOptions:
    """Where the judge runs and how it samples; all of it is recorded with every score."""

    base_url: str
    model: str
    api_key: str = "not-needed"
    temperature: float = 0.0
    max_tokens: int = 128
    seed: int | None = 0
    max_attempts: int = 3
    timeout: float = 60.0
    http_retries: int = 2
    prompts: Mapping[str, str | Callable[[dict[str, str]], str]] = field(default_factory=dict)
    prompt_refs: Mapping[str, str] = field(default_factory=dict)

    def sampling(self) -> dict[str, Any]:
        """The sampling settings sent with each request."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}


class LLMJudge:
    """Scores the RAG triad by asking a model behind an OpenAI-compatible endpoint.

    Args:
        options: Endpoint, model, sampling and optional prompt overrides: `prompts[metric]` is a
            `str.format` template with `{question}`, `{answer}` and `{contexts}` placeholders, or a
            function of those values (e.g. rendering a registry prompt version); `prompt_refs[metric]`
            names the version it came from.

    Examples:
        >>> judge = LLMJudge(LLMJudgeOptions(base_url="http://127.0.0.1:8000/v1", model="judge"))  # doctest: +SKIP
        >>> judge.groundedness("Paris is in France.", ["Paris is the capital of France."]).score  # doctest: +SKIP
        1.0
    """

    name = "llm"

    def __init__(self, options: LLMJudgeOptions) -> None:
        from openai import OpenAI

        self.options = options
        self._client = OpenAI(
            base_url=options.base_url,
            api_key=options.api_key,
            timeout=options.timeout,
            max_retries=options.http_retries,
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> LLMJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def groundedness(self, answer: str, contexts: Sequence[str]) -> JudgeScore:
        """How much of the answer the contexts support (0–1)."""
        return self.score("groundedness", answer=answer, contexts=contexts)

    def context_relevance(self, question: str, contexts: Sequence[str]) -> JudgeScore:
        """How relevant the contexts are to the question (0–1)."""
        return self.score("context_relevance", question=question, contexts=contexts)

    def answer_relevance(self, question: str, answer: str) -> JudgeScore:
        """How directly the answer addresses the question (0–1)."""
        return self.score("answer_relevance", question=question, answer=answer)

    def score(self, metric: str, *, question: str = "", answer: str = "", contexts: Sequence[str] = ()) -> JudgeScore:
        """Ask the judge for one metric's score, retrying until a score can be parsed.

        Raises:
            JudgeParseError: No attempt's reply held a score.
        """
        opts = self.options
        template = opts.prompts.get(metric) or BUILTIN_PROMPTS[metric]
        values = {
            "question": question,
            "answer": answer,
            "contexts": "\n\n".join(f"[{i + 1}] {c}" for i, c in enumerate(contexts)),
        }
        prompt = template(values) if callable(template) else template.format(**values)
        replies: list[str] = []
        for attempt in range(1, opts.max_attempts + 1):
            response = self._client.chat.completions.create(
                model=opts.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=opts.temperature,
                max_tokens=opts.max_tokens,
                seed=opts.seed,
            )
            reply = (response.choices[0].message.content or "") if response.choices else ""
            replies.append(reply)
            value = parse_judgement(reply)
            if value is not None:
                details = {
                    "model": opts.model,
                    "base_url": opts.base_url,
                    "prompt": opts.prompt_refs.get(metric, f"builtin:{metric}"),
                    "prompt_sha256": sha256_hex(prompt),
                    "sampling": opts.sampling(),
                    "raw": reply,
                    "attempts": attempt,
                }
                return JudgeScore(metric, value, self.name, details)
        raise JudgeParseError(
            f"expected a score (JSON, a number or a yes/no verdict) from judge {opts.model!r} at {opts.base_url}; "
            f"got {len(replies)} replies without one, the last: {replies[-1][:200]!r}",
            hint="check the judge prompt asks for a score, or raise max_attempts",
        )
