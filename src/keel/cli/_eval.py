"""`keel eval …`: run suites, show and compare results, gate a candidate, and human-rating round trips."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from keel.cli._context import console, dumps_json, get_store, print_json
from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.evals import (
    EvalResult,
    calibrate_judge,
    compare_results,
    export_for_annotation,
    gate,
    get_result,
    judge_agreement,
    list_results,
    load_suite,
    make_judge,
    read_ratings,
    run_probes,
    run_suite,
)

__all__ = ["eval_app"]

eval_app = typer.Typer(help="Evaluation: run suites, compare results, gate candidates.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Method = Literal["paired-bootstrap", "paired-permutation"]
Correction = Literal["holm", "none"]


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(console=console(), transient=True) as bar:
        task = bar.add_task("evaluating", total=None)

        def update(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)

        yield update


def _verdict(result: EvalResult) -> str:
    """The verdict shown: "passed", "failed", or "no gate" when no metric of the suite has a threshold."""
    if all(agg.threshold is None for agg in result.aggregates.values()):
        return "no gate"
    return "passed" if result.passed else "failed"


def _aggregates_table(result: EvalResult) -> Table:
    table = Table("metric", "mean", "95% CI", "threshold", "passed")
    for name, agg in result.aggregates.items():
        bound = "—" if agg.threshold is None else f"{'≥' if agg.higher_is_better else '≤'} {agg.threshold:g}"
        met = "no gate" if agg.threshold is None else "yes" if agg.passed else "NO"
        table.add_row(name, f"{agg.mean:.4f}", f"[{agg.low:.4f}, {agg.high:.4f}]", bound, met)
    return table


def _print_result(result: EvalResult) -> None:
    out = console()
    verdict = {"passed": "[green]passed[/green]", "failed": "[red]failed[/red]"}.get(_verdict(result), "no gate")
    out.print(f"[bold]eval-result:{result.id}[/bold]  suite {escape(result.suite)}  {verdict}")
    out.print(f"  subject {escape(result.subject)}; dataset {escape(result.dataset or '(inline cases)')}")
    out.print(f"  {result.num_cases} cases, seed {result.seed}, at {format_time(result.created_at)}")
    out.print(_aggregates_table(result))


@eval_app.command("run")
def run(
    ctx: typer.Context,
    suite_file: Annotated[Path, typer.Argument(help="The suite YAML.")],
    json_output: JsonOption = False,
) -> None:
    """Evaluate the suite's subject on its cases and store the result."""
    suite = load_suite(suite_file)
    store = get_store(ctx)
    with _progress(not json_output) as progress:
        result = run_suite(store, suite, progress=progress)
    if json_output:
        print_json(result.to_json())
    else:
        _print_result(result)


@eval_app.command("show")
def show(
    ctx: typer.Context,
    result_id: Annotated[str, typer.Argument(help="An eval result id (ULID or eval-result:ULID).")],
    cases: Annotated[bool, typer.Option("--cases", help="Include every case's output and scores.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Show a stored eval result: aggregates with confidence intervals, and optionally each case."""
    result = get_result(get_store(ctx), result_id)
    if json_output:
        print_json(result.to_json(with_cases=cases))
        return
    _print_result(result)
    if cases:
        table = Table("case", "output", *result.scores)
        for i, (case, output) in enumerate(zip(result.cases, result.outputs, strict=True)):
            table.add_row(
                escape(case.id), escape(output[:80]), *(f"{result.scores[m][i].value:.3f}" for m in result.scores)
            )
        console().print(table)


@eval_app.command("list")
def list_command(
    ctx: typer.Context,
    suite: Annotated[str | None, typer.Option(help="Only results of this suite.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    json_output: JsonOption = False,
) -> None:
    """List stored eval results, newest first."""
    results = list_results(get_store(ctx), suite=suite, limit=limit)
    if json_output:
        print_json([r.to_json() for r in results])
        return
    table = Table("id", "suite", "subject", "verdict", "time (UTC)")
    for r in results:
        table.add_row(r.id, escape(r.suite), escape(r.subject), _verdict(r), format_time(r.created_at)[:19])
    console().print(table if results else "No eval results yet: `keel eval run SUITE.yaml`.")


@eval_app.command("compare")
def compare(
    ctx: typer.Context,
    baseline: Annotated[str, typer.Argument(help="The baseline result id.")],
    candidate: Annotated[str, typer.Argument(help="The candidate result id.")],
    method: Annotated[Method, typer.Option(help="The paired test.")] = "paired-permutation",
    alpha: Annotated[float, typer.Option(help="Family-wise significance level over the metrics.")] = 0.05,
    correction: Annotated[Correction, typer.Option(help="Multiple-comparison correction.")] = "holm",
    json_output: JsonOption = False,
) -> None:
    """Paired test per metric between two results over the same cases, Holm-corrected over the metrics."""
    store = get_store(ctx)
    base, cand = get_result(store, baseline), get_result(store, candidate)
    comparisons = compare_results(base, cand, method=method, alpha=alpha, correction=correction)
    if json_output:
        print_json(
            {
                "baseline": base.id,
                "candidate": cand.id,
                "method": method,
                "alpha": alpha,
                "correction": correction,
                "comparisons": [c.to_json() for c in comparisons],
            }
        )
        return
    table = Table("metric", "baseline", "candidate", "Δ", "95% CI of Δ", "p", "p worse (adj.)", "MDE", "verdict")
    for c in comparisons:
        t = c.test
        verdict = "regression" if c.regression else "improved" if c.improvement else "no significant change"
        table.add_row(
            c.metric,
            f"{t.baseline_mean:.4f}",
            f"{t.candidate_mean:.4f}",
            f"{t.delta:+.4f}",
            f"[{t.low:+.4f}, {t.high:+.4f}]",
            f"{t.p_value:.4f}",
            f"{c.p_worse:.4f}",
            f"{c.mde:.4f}",
            verdict,
        )
    console().print(table)


@eval_app.command("gate")
def gate_command(
    ctx: typer.Context,
    baseline: Annotated[str, typer.Option(help="Baseline: a result id, or a model/prompt ref to evaluate now.")],
    candidate: Annotated[str, typer.Option(help="Candidate: a result id, or a model/prompt ref to evaluate now.")],
    suite_file: Annotated[Path, typer.Option("--suite", help="The suite YAML.")],
    markdown: Annotated[Path | None, typer.Option(help="Also write the Markdown report here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Exit 0 if the candidate may ship, 1 on a significant regression or a broken threshold."""
    suite = load_suite(suite_file)
    store = get_store(ctx)
    with _progress(not json_output) as progress:
        verdict = gate(store, suite, baseline, candidate, progress=progress)
    if markdown is not None:
        markdown.write_text(verdict.to_markdown(), encoding="utf-8")
    if report is not None:
        report.write_text(dumps_json(verdict.to_json()) + "\n", encoding="utf-8")
    if json_output:
        print_json(verdict.to_json())
    else:
        console().print(escape(verdict.to_markdown()))
    raise typer.Exit(0 if verdict.passed else 1)


@eval_app.command("probe")
def probe(
    ctx: typer.Context,
    suite_file: Annotated[Path, typer.Argument(help="The suite YAML (its `probes` section, if any).", dir_okay=False)],
    axis: Annotated[
        list[str] | None, typer.Option(help="Probe this axis (gender, religion, age, nationality); repeatable.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Counterfactual bias probes of the suite's subject; exit 1 when a group's gap exceeds the control's."""
    suite = load_suite(suite_file)
    store = get_store(ctx)
    with _progress(not json_output) as progress:
        run = run_probes(store, suite, axes=axis or None, progress=progress)
    if json_output:
        print_json(run.to_json())
    else:
        out = console()
        verdict = "[green]no gap beyond the control[/green]" if run.passed else "[red]gap beyond the control[/red]"
        out.print(f"[bold]bias probes[/bold]  suite {escape(run.suite)}  subject {escape(run.subject)}  {verdict}")
        table = Table("axis", "group", "vs", "score", "gap (CI)", "control |gap|", "excess (CI)", "beyond control")
        for report in run.reports:
            control = report.control
            for g in report.gaps:
                table.add_row(
                    report.axis,
                    g.group,
                    g.versus,
                    report.score,
                    f"{g.gap:+.3f} [{g.low:+.3f}, {g.high:+.3f}]",
                    f"{control['abs_gap']:.3f} ({control['pairs']} pairs)",
                    f"{g.excess_over_control:+.3f} [{g.excess_low:+.3f}, {g.excess_high:+.3f}]",
                    "YES" if g.beyond_control else "no",
                )
        out.print(table)
    raise typer.Exit(0 if run.passed else 1)


@eval_app.command("export")
def export(
    ctx: typer.Context,
    result_id: Annotated[str, typer.Argument(help="The eval result whose cases to export.")],
    out: Annotated[Path, typer.Option(help="Where to write: .csv or .jsonl.", dir_okay=False)],
    json_output: JsonOption = False,
) -> None:
    """Write a result's cases with an empty `rating` column for human annotators."""
    count = export_for_annotation(get_result(get_store(ctx), result_id), out)
    if json_output:
        print_json({"result": result_id, "path": str(out), "cases": count})
        return
    console().print(f"Wrote {count} cases to {escape(str(out))}; fill the `rating` column with 1/0 (yes/no).")


@eval_app.command("agreement")
def agreement(
    ctx: typer.Context,
    result_id: Annotated[str, typer.Argument(help="The eval result the ratings are for.")],
    ratings: Annotated[Path, typer.Argument(help="The annotated .csv or .jsonl file.")],
    threshold: Annotated[float, typer.Option(help="Judge scores at or above this count as 'yes'.")] = 0.5,
    json_output: JsonOption = False,
) -> None:
    """Cohen's kappa between human ratings and each judged metric of a result."""
    rated = read_ratings(ratings)  # first: a bad file is reported without touching the workspace
    report = judge_agreement(get_result(get_store(ctx), result_id), rated, threshold=threshold)
    if json_output:
        print_json(report)
        return
    table = Table("metric", "kappa", "agreement", "rated cases")
    for metric, row in report["metrics"].items():
        table.add_row(metric, f"{row['kappa']:.3f}", f"{row['agreement']:.1%}", str(row["n"]))
    console().print(table)


@eval_app.command("calibrate-judge")
def calibrate_judge_command(
    ctx: typer.Context,
    suite_file: Annotated[Path, typer.Argument(help="The suite YAML whose cases to judge.", dir_okay=False)],
    judge: Annotated[
        str,
        typer.Option(
            help="The judge to calibrate: `suite` (the suite's llm judge), `smollm2` (local, in process), "
            "or an OpenAI-compatible base URL (with --model)."
        ),
    ] = "suite",
    model: Annotated[str | None, typer.Option(help="The judge model, when --judge is a URL.")] = None,
    pin_model: Annotated[bool, typer.Option(help="Refuse replies from another model than --model.")] = False,
    against: Annotated[Literal["offline"], typer.Option(help="The reference judge.")] = "offline",
    metric: Annotated[
        Literal["groundedness", "context_relevance", "answer_relevance"], typer.Option(help="The metric to judge.")
    ] = "groundedness",
    result: Annotated[
        str | None, typer.Option(help="Judge this eval result's outputs; default: each case's `expected` answer.")
    ] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Scores at or above this pass.")] = 0.5,
    json_output: JsonOption = False,
) -> None:
    """Agreement of an LLM judge with the offline judge on a suite's cases: kappa, agreement, correlation, AUC."""
    from keel.evals import LLMJudge, LLMJudgeOptions, LocalChatClient, OfflineJudge, load_cases
    from keel.evals._suite import JudgeSpec

    suite = load_suite(suite_file)
    store = get_store(ctx)
    if result is not None:
        stored = get_result(store, result)
        pairs = [(c, o) for c, o in zip(stored.cases, stored.outputs, strict=True)]
    else:
        pairs = [(c, c.expected or "") for c in load_cases(store, suite)[0]]
        if metric != "context_relevance" and any(c.expected is None for c, _ in pairs):
            raise InputError(
                f"expected every case of {suite_file} to have an `expected` answer to judge; some have none",
                hint="pass --result RESULT_ID to judge a stored eval result's outputs instead",
            )
    if not pairs:
        raise InputError(f"expected cases to judge in {suite_file}; found none", hint="add cases to the suite")
    if judge == "suite":
        if suite.judge.kind != "llm":
            raise InputError(
                f"expected an llm judge in {suite_file}'s `judge:` section; found {suite.judge.kind!r}",
                hint="add `judge: {kind: llm, base_url: ..., model: ...}` or pass --judge URL --model NAME",
            )
        candidate = make_judge(suite.judge, store)
    elif judge == "smollm2":
        client = LocalChatClient.smollm2()
        candidate = LLMJudge(LLMJudgeOptions(base_url="in-process", model=client.name, max_tokens=48), client=client)
    else:
        if not judge.startswith(("http://", "https://")) or not model:
            raise InputError(
                f"expected --judge suite, smollm2 or an http(s) base URL with --model; found {shown(judge)}"
                + ("" if model else " without --model"),
                hint="e.g. --judge http://127.0.0.1:8000/v1 --model judge",
            )
        spec = JudgeSpec(kind="llm", base_url=judge, model=model, pin_model=pin_model)
        candidate = make_judge(spec, store)
    reference = OfflineJudge()  # the only reference so far; `against` names it in the report
    cases = [(c.input, answer, list(c.contexts)) for c, answer in pairs]
    try:
        with _progress(not json_output) as progress:
            if progress:
                progress("judging", 0, len(cases))
            on_case = (lambda done, total: progress("judging", done, total)) if progress else None
            report = calibrate_judge(candidate, reference, cases, metric=metric, threshold=threshold, on_case=on_case)
    finally:
        candidate.close()
    data = {"suite": suite.name, "result": result, **report.to_json()}
    if json_output:
        print_json(data)
        return
    table = Table("judge", "vs", "cases", "agreement", "kappa", "AUC", "pearson", "spearman", "mean diff")
    auc = "—" if report.auc is None else f"{report.auc:.3f}"
    table.add_row(
        escape(str(report.judge.get("model") or report.judge.get("name"))),
        report.reference,
        str(report.n),
        f"{report.agreement:.1%}",
        f"{report.kappa:.3f}",
        auc,
        f"{report.pearson:.3f}",
        f"{report.spearman:.3f}",
        f"{report.mean_difference:+.3f}",
    )
    console().print(table)
    console().print(f"  metric {metric}, pass at ≥ {threshold:g}; prompt {escape(str(report.judge.get('prompt')))}")
    if report.unscored:
        console().print(
            f"  {len(report.unscored)} of {len(cases)} cases left out: the judge gave no parseable score "
            f"(cases {', '.join(pairs[i][0].id for i in report.unscored)})"
        )
