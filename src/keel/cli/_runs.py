"""`keel run …`: list, show, compare and close runs."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from keel.cli._context import console, get_store, print_json
from keel.cli._render import duration, sparkline
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.core.ids import canonical_json
from keel.registry import RunInfo, close_run, get_run, list_runs, metric_series

__all__ = ["runs_app"]

runs_app = typer.Typer(help="Runs: parameters, metrics, artifacts and environment of every job.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _status(run: RunInfo) -> tuple[str, str]:
    """The run's status and duration as shown: a running run whose process is gone from this host is `lost`."""
    return ("[red]lost[/red]", "—") if run.lost else (run.status, duration(run.started_at, run.ended_at))


def _param_filters(pairs: list[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"expected --param KEY=VALUE such as lr=0.001; got {shown(pair)}")
        try:
            filters[key] = json.loads(raw)
        except json.JSONDecodeError:
            filters[key] = raw  # plain text, e.g. method=lora
    return filters


def _shared_params(found: list[RunInfo]) -> dict[str, Any]:
    """The params every listed run has with the same value (when more than one run is listed)."""
    if len(found) < 2:
        return {}
    first = found[0].params
    return {k: v for k, v in first.items() if all(k in r.params and r.params[k] == v for r in found[1:])}


@runs_app.command("list")
def list_command(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind (train, eval, …).")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    param: Annotated[list[str], typer.Option(help="KEY=VALUE parameter filter; repeat to combine.")] = [],  # noqa: B006
    sort: Annotated[
        str | None, typer.Option(help="Sort by this metric's final value (runs without it are left out).")
    ] = None,
    ascending: Annotated[bool, typer.Option("--asc", help="Sort ascending (default: descending).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Runs per page.")] = 50,
    page: Annotated[int, typer.Option(min=1, help="Page number.")] = 1,
    json_output: JsonOption = False,
) -> None:
    """List runs, newest first or sorted by a metric, filtered by kind, status and parameters."""
    store = get_store(ctx)
    with store.db.read() as conn:
        found = list_runs(
            conn,
            kind=kind,
            status=status,
            params=_param_filters(param),
            sort_by=sort,
            descending=not ascending,
            limit=limit,
            offset=(page - 1) * limit,
        )
    if json_output:
        print_json([run.to_json(with_env=False) for run in found])
        return
    run_column = Column("run", no_wrap=True, min_width=26)  # ids are copied from here: never cropped
    table = Table(run_column, "kind", "status", "started (UTC)", "took", "params", "metrics")
    shared = _shared_params(found)
    for run in found:
        # Nested params (a whole recipe or training config) would make the row pages wide: the table shows only
        # the params that tell the listed runs apart, each clipped; `keel run show` and --json have them in full.
        params = ", ".join(f"{k}={_clip(canonical_json(v), 40)}" for k, v in run.params.items() if k not in shared)
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in list(run.metrics.items())[:6])
        metrics += ", …" if len(run.metrics) > 6 else ""
        started = run.started_at.strftime("%Y-%m-%d %H:%M:%S")
        status_shown, took = _status(run)
        table.add_row(run.id, run.kind, status_shown, started, took, params, metrics)
    console().print(table)
    if shared:
        same = ", ".join(f"{k}={_clip(canonical_json(v), 40)}" for k, v in sorted(shared.items()))
        console().print(f"[dim]same in every run listed: {escape(same)}[/dim]")
    if not found:
        console().print("No runs match." if (kind or status or param) else "No runs yet.")
    elif any(run.lost for run in found):
        console().print("[dim]lost: its process ended without closing the run (killed outright?); "
                        "`keel run close RUN` marks it killed.[/dim]")  # fmt: skip


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id (or a unique prefix).")],
    json_output: JsonOption = False,
) -> None:
    """Show one run: parameters, metric curves, artifacts and environment."""
    store = get_store(ctx)
    with store.db.read() as conn:
        run = get_run(conn, run_id)
        series = metric_series(conn, run.id)
    if json_output:
        print_json({**run.to_json(), "series": {k: [[s, v] for s, v in pts] for k, pts in series.items()}})
        return
    out = console()
    status, took = _status(run)
    out.print(f"[bold]run {run.id}[/bold]  {run.kind}  {status}  {took}")
    if run.lost:
        process = run.env.get("process") or {}
        out.print(
            f"[red]lost:[/red] its process (pid {process.get('pid')} on {process.get('host')}) ended without "
            f"closing the run; `keel run close {run.id}` marks it killed"
        )
    if run.error:
        out.print(f"[red]error:[/red] {run.error}")
    for key, value in run.params.items():
        out.print(f"  param  {key} = {canonical_json(value)}")
    for key, points in series.items():
        values = [v for _, v in points]
        out.print(f"  metric {key} = {values[-1]:.6g}  {sparkline(values)}  ({len(values)} points)")
    for path, digest in run.artifacts.items():
        out.print(f"  artifact {path}  [dim]{digest[:12]}[/dim]")
    git = run.env.get("git") or {}
    code = f"{git.get('commit', '')[:12]}{' dirty' if git.get('dirty') else ''}" if git else "no git checkout"
    out.print(
        f"  env    python {run.env.get('python')}, {run.env.get('platform')}, code {code}, seed {run.env.get('seed')}"
    )


@runs_app.command("close")
def close(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id (or a unique prefix).")],
    status: Annotated[str, typer.Option(help="`killed` or `failed`.")] = "killed",
    reason: Annotated[str | None, typer.Option(help="Kept as the run's error (default: where it ran).")] = None,
    force: Annotated[bool, typer.Option(help="Close it although its process still runs on this host.")] = False,
    json_output: JsonOption = False,
) -> None:
    """End a run left `running` by a process that could not close it (killed outright, machine gone)."""
    run = close_run(get_store(ctx), run_id, status, reason, force=force)  # type: ignore[arg-type]
    if json_output:
        print_json(run.to_json(with_env=False))
        return
    console().print(f"run {run.id} closed as {run.status}: {run.error}")


@runs_app.command("compare")
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN...", help="Two or more run ids.")],
    json_output: JsonOption = False,
) -> None:
    """Compare runs side by side: parameters (differences marked) and final metrics with curves."""
    if len(run_ids) < 2:
        raise InputError(f"expected at least two runs to compare; got {len(run_ids)}")
    store = get_store(ctx)
    with store.db.read() as conn:
        found = [get_run(conn, run_id) for run_id in run_ids]
        curves = {run.id: metric_series(conn, run.id) for run in found}
    params = sorted({key for run in found for key in run.params})
    metrics = sorted({key for run in found for key in run.metrics})
    if json_output:
        print_json(
            {
                "runs": [run.id for run in found],
                "params": {k: [run.params.get(k) for run in found] for k in params},
                "metrics": {k: [run.metrics.get(k) for run in found] for k in metrics},
            }
        )
        return
    table = Table("", *[run.id for run in found])
    for key in params:
        values = [canonical_json(run.params[key]) if key in run.params else "—" for run in found]
        marker = "*" if len(set(values)) > 1 else ""
        table.add_row(f"{marker}{key}", *values)
    for key in metrics:
        cells = []
        for run in found:
            points = [v for _, v in curves[run.id].get(key, [])]
            cells.append(f"{run.metrics[key]:.4g} {sparkline(points, 12)}" if key in run.metrics else "—")
        table.add_row(f"[bold]{key}[/bold]", *cells)
    console().print(table)
    console().print("[dim]* parameters that differ[/dim]")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
