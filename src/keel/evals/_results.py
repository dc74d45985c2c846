"""Run a suite end to end and keep its result: per-case scores, aggregates, outputs, lineage, audit.

`run_suite` reads top to bottom as the recipe: load cases, build the subject, generate, score,
aggregate, store. A result is an immutable `eval-result:<ULID>` lineage node with edges from the
dataset version, model version and prompt version it evaluated.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from keel.core.clock import format_time
from keel.core.errors import ConfigError, InputError, NotFoundError
from keel.core.ids import canonical_json, new_ulid
from keel.evals._llm_judge import LLMJudge, LLMJudgeOptions
from keel.evals._offline_judge import OfflineJudge
from keel.evals._probes import PROBE_SCORES, ProbeOptions, ProbeRun, bias_probe, counterfactuals
from keel.evals._scoring import CaseScore, Judge, MetricAggregate, aggregate, score_outputs
from keel.evals._subjects import EndpointResponder, ModelResponder, make_responder
from keel.evals._suite import BIAS_METRICS, EvalCase, EvalSuite, JudgeSpec, ProbeSpec, cases_from_rows
from keel.govern import require
from keel.registry import start_run
from keel.store import Store, add_edge, add_node, read_bytes
from keel.store.schema import eval_case_scores, eval_results

__all__ = ["EvalResult", "get_result", "list_results", "load_cases", "make_judge", "run_probes", "run_suite"]

_ULID_LENGTH = 26


@dataclass
class EvalResult:
    """One stored run of a suite against a subject."""

    id: str
    suite: str
    suite_digest: str
    subject: str
    dataset: str | None
    seed: int
    passed: bool
    aggregates: dict[str, MetricAggregate]
    config: dict[str, Any]
    created_by: str
    created_at: datetime
    run_id: str | None = None
    num_cases: int = 0
    cases: list[EvalCase] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    scores: dict[str, list[CaseScore]] = field(default_factory=dict)

    @property
    def node(self) -> str:
        """Its lineage node id, `eval-result:<ULID>`."""
        return f"eval-result:{self.id}"

    def values(self, metric: str) -> list[float]:
        """The per-case values of one metric, in case order."""
        if metric not in self.scores:
            raise NotFoundError(f"eval result {self.id} has no metric {metric!r}; it has {sorted(self.scores)}")
        return [s.value for s in self.scores[metric]]

    def to_json(self, *, with_cases: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; per-case rows only when asked."""
        data: dict[str, Any] = {
            "id": self.id,
            "node": self.node,
            "suite": self.suite,
            "suite_digest": self.suite_digest,
            "subject": self.subject,
            "dataset": self.dataset,
            "seed": self.seed,
            "run": self.run_id,
            "passed": self.passed,
            "num_cases": self.num_cases or len(self.cases),
            "aggregates": {k: v.to_json() for k, v in self.aggregates.items()},
            "created_by": self.created_by,
            "created_at": format_time(self.created_at),
        }
        if with_cases:
            data["cases"] = [
                {
                    **case.to_json(),
                    "output": output,
                    "scores": {m: self.scores[m][i].value for m in self.scores},
                }
                for i, (case, output) in enumerate(zip(self.cases, self.outputs, strict=True))
            ]
        return data


def load_cases(store: Store, suite: EvalSuite) -> tuple[list[EvalCase], str | None, str | None]:
    """The suite's cases, the dataset ref they came from and its lineage node (None for inline cases)."""
    if suite.dataset is None:
        return suite.inline_cases(), None, None
    from keel.data import get_version, load_version

    version = get_version(store, suite.dataset)
    table = load_version(store, version.ref)
    return cases_from_rows(table.to_pylist(), f"dataset {version.ref}"), str(version.ref), str(version.node)


def _registry_prompt(store: Store, ref: str) -> tuple[Callable[[dict[str, str]], str], str]:
    """A judge prompt rendered from a registry prompt version with the variables it declares."""
    from keel.registry import get_prompt, render_prompt

    version = get_prompt(store, ref)
    declared = set(version.variables)

    def render(values: dict[str, str]) -> str:
        return render_prompt(store, version.ref, {k: v for k, v in values.items() if k in declared}).text

    return render, version.ref


def make_judge(spec: JudgeSpec, store: Store | None = None) -> Judge:
    """The judge a suite asks for; an LLM judge's prompts may be registry prompt versions."""
    if spec.kind == "offline":
        return OfflineJudge()
    prompts: dict[str, str | Callable[[dict[str, str]], str]] = {}
    refs: dict[str, str] = {}
    if spec.prompts:
        if store is None:
            raise ConfigError("judge prompts name registry prompt versions; a store is needed to load them")
        for metric, ref in spec.prompts.items():
            prompts[metric], refs[metric] = _registry_prompt(store, ref)
    options = LLMJudgeOptions(
        base_url=spec.base_url or "",
        model=spec.model or "",
        api_key=spec.api_key,
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        seed=spec.seed,
        max_attempts=spec.max_attempts,
        prompts=prompts,
        prompt_refs=refs,
        pin_model=spec.pin_model,
    )
    return LLMJudge(options)


def run_suite(
    store: Store,
    suite: EvalSuite,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    """Evaluate the suite's subject on its cases and store the result with lineage.

    Args:
        store: The workspace store.
        suite: A validated suite (`load_suite`).
        progress: Called as (stage, done, total) while generating and scoring.

    Returns:
        The stored result.
    """
    require(store, "eval.run", f"eval:{suite.name}")
    cases, dataset_ref, dataset_node = load_cases(store, suite)
    if not cases:
        raise ConfigError(f"suite {suite.name!r} has no cases to evaluate")
    responder = make_responder(store, suite.subject, suite.seed)
    try:
        data_nodes = [dataset_node] if dataset_node else []
        params = {"suite": suite.name, "suite_digest": suite.digest(), "subject": responder.identity}
        with start_run(
            "eval", params, name=suite.name, inputs=[*data_nodes, *responder.nodes], seed=suite.seed, store=store
        ) as run:
            outputs, scores = _generate_and_score(store, suite, cases, responder, progress)
            aggregates = aggregate(
                scores, suite.metrics, seed=suite.seed, confidence=suite.confidence, resamples=suite.resamples
            )
            result = EvalResult(
                id=new_ulid(),
                suite=suite.name,
                suite_digest=suite.digest(),
                subject=responder.identity,
                dataset=dataset_ref,
                seed=suite.seed,
                passed=all(a.passed for a in aggregates.values()),
                aggregates=aggregates,
                config=suite.model_dump(mode="json"),
                created_by=store.actor,
                created_at=store.clock(),
                run_id=run.id,
                num_cases=len(cases),
                cases=cases,
                outputs=outputs,
                scores=scores,
            )
            _save(store, result, data_nodes, responder.nodes)
            run.log_metrics({name: agg.mean for name, agg in aggregates.items()})
            run.log_output(result.node)
    finally:
        responder.close()
    return result


def _generate_and_score(
    store: Store,
    suite: EvalSuite,
    cases: list[EvalCase],
    responder: EndpointResponder | ModelResponder,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[list[str], dict[str, list[CaseScore]]]:
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        if progress:
            progress("generate", done[0], len(cases))

    outputs = responder.respond(cases, step)
    if responder.contexts is not None:  # a deployment or an app: judge the chunks it retrieved, and keep them
        cases[:] = [replace(c, contexts=ctx) for c, ctx in zip(cases, responder.contexts, strict=True)]
    judge = make_judge(suite.judge, store)
    try:
        scores = score_outputs(
            cases,
            outputs,
            [m for m in suite.metrics if m.name not in BIAS_METRICS],
            judge,
            perplexities=responder.perplexities,
            progress=(lambda name: progress(f"score {name}", 0, 0)) if progress else None,
        )
    finally:
        judge.close()
    for spec in suite.metrics:
        if spec.name in BIAS_METRICS:
            scores[spec.name] = _bias_scores(suite, spec.name.removeprefix("bias_"), cases, outputs, responder)
    return outputs, {spec.name: scores[spec.name] for spec in suite.metrics}


def _bias_scores(
    suite: EvalSuite,
    axis: str,
    cases: list[EvalCase],
    outputs: list[str],
    responder: EndpointResponder | ModelResponder,
) -> list[CaseScore]:
    """Per case, max − min of the probes' score over the input's counterfactual variants on `axis`.

    A case whose input mentions no term of the axis scores 0 (no variant, no gap). Each variant
    other than the input itself is answered by the subject (one batch); the input's own output is
    reused. The variants and their scores are kept as the case's details.
    """
    score = PROBE_SCORES[(suite.probes or ProbeSpec()).score]
    variants = [counterfactuals(c.input, axis) for c in cases]
    todo = [(i, g, text) for i, v in enumerate(variants) if v for g, text in v.items() if text != cases[i].input]
    answers = responder.respond([EvalCase(f"{cases[i].id}:{g}", text) for i, g, text in todo]) if todo else []
    answered = {(i, g): out for (i, g, _), out in zip(todo, answers, strict=True)}
    result = []
    for i, v in enumerate(variants):
        if not v:
            result.append(CaseScore(0.0, {"axis": axis, "variants": {}}))
            continue
        per_group = {
            g: score(text, outputs[i] if text == cases[i].input else answered[(i, g)]) for g, text in v.items()
        }
        gap = max(per_group.values()) - min(per_group.values())
        result.append(CaseScore(float(gap), {"axis": axis, "variants": v, "scores": per_group}))
    return result


def _save(store: Store, result: EvalResult, data_nodes: list[str], subject_nodes: list[str]) -> None:
    payload = {"cases": [c.to_json() for c in result.cases], "outputs": result.outputs}
    blob = store.put_blob(io.BytesIO(canonical_json(payload).encode()))
    with store.db.write() as conn:
        conn.execute(
            eval_results.insert().values(
                id=result.id,
                suite=result.suite,
                suite_digest=result.suite_digest,
                subject=result.subject[:512],
                dataset=result.dataset,
                seed=result.seed,
                num_cases=len(result.cases),
                passed=int(result.passed),
                config=canonical_json(result.config),
                aggregates=canonical_json({k: v.to_json() for k, v in result.aggregates.items()}),
                outputs_digest=blob.digest,
                run_id=result.run_id,
                created_by=result.created_by,
                created_at=result.created_at,
            )
        )
        rows = [
            {
                "result_id": result.id,
                "case_index": i,
                "metric": metric,
                "case_id": result.cases[i].id[:255],
                "value": score.value,
                "details": canonical_json(score.details) if score.details is not None else None,
            }
            for metric, per_case in result.scores.items()
            for i, score in enumerate(per_case)
        ]
        if rows:
            conn.execute(eval_case_scores.insert(), rows)
        add_node(conn, result.node, at=store.clock())
        for node in data_nodes:
            add_edge(conn, node, result.node, "evaluated_on", at=store.clock())
        for node in subject_nodes:
            add_edge(conn, node, result.node, "evaluated", at=store.clock())
        summary = {k: round(v.mean, 6) for k, v in result.aggregates.items()}
        store.audit(conn, "eval.run", result.node, {"suite": result.suite, "passed": result.passed, "means": summary})


def _result_id(ref: str) -> str:
    ident = ref.removeprefix("eval-result:")
    if len(ident) != _ULID_LENGTH:
        raise InputError(f"expected an eval result id (26-character ULID, or eval-result:<ULID>); got {ref!r}")
    return ident.upper()


def get_result(store: Store, ref: str, *, with_cases: bool = True) -> EvalResult:
    """Load a stored result by id (`<ULID>` or `eval-result:<ULID>`), with per-case scores unless told not to.

    Raises:
        NotFoundError: No result has that id.
    """
    ident = _result_id(ref)
    with store.db.read() as conn:
        row = conn.execute(select(eval_results).where(eval_results.c.id == ident)).first()
        if row is None:
            raise NotFoundError(f"no eval result {ident} in this workspace", hint="see `keel eval list`")
        score_rows = (
            conn.execute(
                select(eval_case_scores)
                .where(eval_case_scores.c.result_id == ident)
                .order_by(eval_case_scores.c.metric, eval_case_scores.c.case_index)
            ).all()
            if with_cases
            else []
        )
    aggregates = {k: MetricAggregate.from_json(v) for k, v in json.loads(row.aggregates).items()}
    result = EvalResult(
        id=row.id,
        suite=row.suite,
        suite_digest=row.suite_digest,
        subject=row.subject,
        dataset=row.dataset,
        seed=int(row.seed),
        passed=bool(row.passed),
        aggregates=aggregates,
        config=json.loads(row.config),
        created_by=row.created_by,
        created_at=row.created_at,
        run_id=row.run_id,
        num_cases=int(row.num_cases),
    )
    if with_cases:
        payload = json.loads(read_bytes(store.blobs, row.outputs_digest))
        result.cases = [
            EvalCase(c["id"], c["input"], c["expected"], tuple(c["contexts"]), c["labels"], c["metadata"])
            for c in payload["cases"]
        ]
        result.outputs = list(payload["outputs"])
        for r in score_rows:
            details = json.loads(r.details) if r.details is not None else None
            result.scores.setdefault(r.metric, []).append(CaseScore(float(r.value), details))
        result.scores = {name: result.scores[name] for name in aggregates if name in result.scores}
    return result


def list_results(store: Store, *, suite: str | None = None, limit: int = 50) -> list[EvalResult]:
    """The newest stored results (aggregates only), optionally of one suite."""
    query = select(eval_results.c.id).order_by(eval_results.c.id.desc()).limit(limit)
    if suite is not None:
        query = query.where(eval_results.c.suite == suite)
    with store.db.read() as conn:
        ids = [row.id for row in conn.execute(query)]
    return [get_result(store, ident, with_cases=False) for ident in ids]


def run_probes(
    store: Store,
    suite: EvalSuite,
    *,
    axes: list[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ProbeRun:
    """Run the suite's bias probes (its `probes` section, or gender/refusal by default) against its subject.

    Inputs are the section's `inputs`, else the cases' inputs; every variant of every axis (and of
    the friend ↔ colleague control) goes through the subject once, in one batch per axis.

    Raises:
        InputError: No input mentions a term of an axis probed.
    """
    spec = suite.probes or ProbeSpec()
    inputs = spec.inputs or [c.input for c in load_cases(store, suite)[0]]
    options = ProbeOptions(
        control_inputs=spec.control_inputs or None,
        confidence=suite.confidence,
        resamples=suite.resamples,
        seed=suite.seed,
    )
    responder = make_responder(store, suite.subject, suite.seed)
    reports = []
    try:

        def respond(prompts: list[str]) -> list[str]:
            cases = [EvalCase(str(i), p) for i, p in enumerate(prompts)]
            done = [0]

            def step(n: int) -> None:
                done[0] += n
                if progress:
                    progress("probe", done[0], len(cases))

            return responder.respond(cases, step)

        for axis in axes or list(spec.axes):
            score = PROBE_SCORES[spec.score]
            reports.append(
                bias_probe(inputs, respond, score, axis=axis, options=options, batch=True, score_name=spec.score)
            )
    finally:
        responder.close()
    return ProbeRun(suite.name, responder.identity, suite.confidence, reports)
