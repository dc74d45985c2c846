"""`keel monitor …`: traffic summaries, drift, alerts and the loop that runs guarded rollouts."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.monitor import parse_duration, summarize

__all__ = ["monitor_app"]

monitor_app = typer.Typer(help="Served traffic: summaries, drift, alerts, guarded rollouts.", no_args_is_help=True)


@monitor_app.command("summary")
def summary(
    ctx: typer.Context,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    hours: Annotated[float | None, typer.Option(help="Only the last HOURS hours (default: all).")] = None,
    by: Annotated[
        str | None, typer.Option(help="A time series: one row per bucket of this length (30s, 5m, 1h, 1d).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """p50/p95/p99 latency, tokens, cost, error rate and feedback per deployment and model version."""
    store = get_store(ctx)
    since = store.clock() - timedelta(hours=hours) if hours is not None else None
    bucket = parse_duration(by) if by is not None else None
    rows = summarize(store, deployment=deployment, since=since, by=bucket)
    if json_output:
        print_json([r.to_json() for r in rows])
        return
    columns = ["deployment", "version", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "tokens in/out", "cost",
               "feedback", "score", "judge"]  # fmt: skip
    table = Table(*(["start (UTC)"] if bucket else []), *columns)
    for r in rows:
        table.add_row(*([format_time(r.start)[:19]] if r.start else []), escape(r.deployment),
                      escape(r.model_version or "—"), str(r.requests), f"{r.errors} ({r.error_rate:.1%})",
                      f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.tokens_in}/{r.tokens_out}",
                      f"{r.cost:.4f}", str(r.feedback), _score(r.feedback_score), _score(r.judge_score))  # fmt: skip
    console().print(table if rows else "No traces yet.")


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RulesOption = Annotated[
    Path | None, typer.Option("--rules", help="Alerts YAML file (rules, sinks, cool-down, inhibitions).")
]


@monitor_app.command("drift")
def drift(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="The deployment whose traffic is tested.")],
    reference: Annotated[
        str | None, typer.Option(help="A dataset version (NAME@vN) whose prompts are the reference.")
    ] = None,
    baseline_window: Annotated[
        str | None, typer.Option(help="Or: this much traffic before the window, e.g. 7d.")
    ] = None,
    window: Annotated[str, typer.Option(help="The current window, ending now, e.g. 1d or 6h.")] = "1d",
    alpha: Annotated[
        float, typer.Option(help="False-alarm rate of the whole report (Bonferroni over features).")
    ] = 0.01,
    json_output: JsonOption = False,
) -> None:
    """Test DEPLOYMENT's recent traffic for drift from a dataset version or an earlier window, by feature."""
    from keel.monitor import DriftOptions, detect_drift, parse_duration

    store = get_store(ctx)
    report = detect_drift(
        store, deployment, window=parse_duration(window), reference=reference,
        baseline_window=None if baseline_window is None else parse_duration(baseline_window),
        options=DriftOptions(alpha=alpha),
    )  # fmt: skip
    if json_output:
        print_json(report.to_json())
        return
    out = console()
    out.print(escape(f"{deployment}: {report.window} against {report.reference}"))
    table = Table("feature", "test", "statistic", "p-value", "drift", "finding")
    for f in report.features:
        table.add_row(f.feature, f.test, f"{f.statistic:.4g}", f"{f.p_value:.3g}", "yes" if f.drifted else "no",
                      escape(f.sentence))  # fmt: skip
    out.print(table)
    for name, why in report.skipped.items():
        out.print(escape(f"not tested: {name}: {why}"))
    out.print("Drift detected." if report.drifted else "No drift detected.")


def _print_tick(tick: Any, json_output: bool) -> None:
    if json_output:
        print_json(tick.to_json())
        return
    out = console()
    for d in tick.rollouts:
        out.print(escape(f"rollout {d.deployment}: {d.decision} (canary {d.weight}%): {d.reason}"))
    for e in tick.alerts:
        note = "" if e.notify else f" (not sent: {e.suppressed})"
        out.print(escape(f"alert {e.rule} {e.status} [{e.severity}]: {e.summary}{note}"))
    for sink, error in tick.sink_failures.items():
        out.print(escape(f"sink {sink} failed: {error}"))
    if not (tick.rollouts or tick.alerts):
        out.print("Nothing changed.")


PipelineOption = Annotated[
    list[Path] | None,
    typer.Option("--pipeline", help="A pipeline.yaml whose `triggers:` (schedule, alerts) start runs; repeatable."),
]


def _trigger(store: Any, files: list[Path] | None) -> Any:
    """A `keel.pipeline` trigger for the pipelines given, or None (pipelines are floor 6: the CLI joins them)."""
    if not files:
        return None
    from keel.pipeline import load_pipeline
    from keel.pipeline._triggers import PipelineTrigger

    return PipelineTrigger(store, [load_pipeline(f) for f in files])


def _print_triggered(decisions: list[Any], json_output: bool) -> None:
    for d in decisions:
        if json_output:
            print_json({"pipeline_started": d.to_json()})
        else:
            console().print(escape(f"pipeline {d.pipeline} started: {d.reason}"))


@monitor_app.command("check")
def check(
    ctx: typer.Context, rules: RulesOption = None, pipeline: PipelineOption = None, json_output: JsonOption = False
) -> None:
    """Run the monitor once: step due guarded rollouts, evaluate alert rules, notify (for cron or CI).

    With --pipeline, also start each pipeline its triggers make due, and wait for it.
    """
    from keel.monitor import load_alert_config, monitor_tick

    config = None if rules is None else load_alert_config(rules)
    store = get_store(ctx)
    trigger = _trigger(store, pipeline)
    tick = monitor_tick(store, config)
    _print_tick(tick, json_output)
    if trigger is not None:
        _print_triggered(trigger.on_tick(tick), json_output)
        trigger.wait()
        for name, result in trigger.results.items():
            if json_output:
                print_json({"pipeline": name, "result": result})
            else:
                console().print(escape(f"pipeline {name}: {result}"))


@monitor_app.command("watch")
def watch(
    ctx: typer.Context,
    rules: RulesOption = None,
    every: Annotated[str, typer.Option(help="Time between ticks, e.g. 30s.")] = "30s",
    pipeline: PipelineOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run the monitor until interrupted: guarded rollouts and alert rules, every EVERY (one JSON line per tick)."""
    from keel.monitor import load_alert_config, parse_duration
    from keel.monitor import watch as watch_loop

    config = None if rules is None else load_alert_config(rules)
    interval = parse_duration(every)
    store = get_store(ctx)
    trigger = _trigger(store, pipeline)
    if not json_output:
        console().print(escape(f"Watching every {every} ({len(config.rules) if config else 0} rules); Ctrl-C stops."))

    def on_tick(tick: Any) -> None:
        _print_tick(tick, json_output)
        if trigger is not None:
            _print_triggered(trigger.on_tick(tick), json_output)

    try:
        watch_loop(store, config, every=interval, on_tick=on_tick)
    except KeyboardInterrupt:
        return


@monitor_app.command("alerts")
def alerts_command(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only incidents in this state: pending, firing, resolved.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Alert incidents, newest first."""
    from keel.monitor import list_alerts

    found = list_alerts(get_store(ctx), state=state)
    if json_output:
        print_json(found)
        return
    table = Table("#", "rule", "severity", "state", "value", "fired (UTC)", "resolved (UTC)", "sent")
    for a in found:
        table.add_row(str(a["id"]), escape(a["rule"]), a["severity"], a["state"],
                      "—" if a["value"] is None else f"{a['value']:.4g}", (a["fired_at"] or "—")[:19],
                      (a["resolved_at"] or "—")[:19], "yes" if a["notified"] else "no")  # fmt: skip
    console().print(table if found else "No alerts yet.")


@monitor_app.command("prometheus-rules")
def prometheus_rules_command(
    rules: Annotated[Path, typer.Argument(help="Alerts YAML file.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the rule file here (default: stdout).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Write RULES as a Prometheus rule file; rules over trace-only metrics (drift, feedback) are listed as skipped."""
    import yaml

    from keel.monitor import load_alert_config, prometheus_rules

    document, skipped = prometheus_rules(load_alert_config(rules))
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if output is not None:
        output.write_text(text, encoding="utf-8")
    if json_output:
        print_json({"rules": document, "skipped": skipped, "output": None if output is None else str(output)})
        return
    if output is None:
        sys.stdout.write(text)
    for why in skipped:
        sys.stderr.write(f"skipped {why}\n")


@monitor_app.command("cost")
def cost(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="The deployment whose traffic is priced.")],
    compare_api: Annotated[
        str, typer.Option("--compare-api", help="An API of the price table (gpt-4o-mini, claude-3.5-haiku, …).")
    ] = "gpt-4o-mini",
    hours: Annotated[float, typer.Option(min=0.001, help="The period: the last HOURS hours.")] = 24.0,
    hardware_cost_per_hour: Annotated[
        float | None,
        typer.Option(min=0.0, help="The serving machine's cost per hour (default: `hardware:` in api_prices.yaml)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """What DEPLOYMENT's traffic cost self-hosted (tokens ÷ measured throughput × hardware cost) vs an API."""
    from keel.monitor import cost_report

    store = get_store(ctx)
    until = store.clock()
    report = cost_report(store, deployment, api=compare_api, since=until - timedelta(hours=hours), until=until,
                         hardware_cost_per_hour=hardware_cost_per_hour)  # fmt: skip
    if json_output:
        print_json(report.to_json())
        return
    r, cur = report, report.currency
    table = Table("", "self-hosted", escape(r.api))
    table.add_row("tokens in / out", f"{r.tokens_in:,} / {r.tokens_out:,}", f"{r.tokens_in:,} / {r.tokens_out:,}")
    table.add_row("rate", f"{r.hardware_cost_per_hour:g} {cur}/hour at {r.tokens_per_second:,.1f} tokens/s",
                  f"{r.api_input_per_million:g} / {r.api_output_per_million:g} {cur} per million in / out")  # fmt: skip
    table.add_row("cost", f"{r.self_hosted_cost:.4f} {cur} ({r.busy_seconds:,.1f} s busy)", f"{r.api_cost:.4f} {cur}")
    console().print(
        f"{escape(deployment)}: {r.requests} answered requests in the last {hours:g} h "
        f"({r.cache_hits} from the cache, not priced); API prices as of {r.prices_as_of} ({escape(r.prices_source)})."
    )
    console().print(table)
    verdict = "—" if r.ratio is None else f"the API would cost {r.ratio:.2f}× the self-hosted busy time"
    console().print(f"{verdict}; a machine kept for it all period costs {r.provisioned_cost:.2f} {cur}.")
