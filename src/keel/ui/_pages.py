"""The console's read-only pages: each calls one or two library functions and renders a template.

Lists over tables that grow without bound (runs, traces, audit events) page by keyset (`after=` the last id
shown), never by OFFSET, so the thousandth page costs what the first does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow.compute as pc
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from keel.core.errors import InputError, NotFoundError
from keel.data import diff_versions, get_version, iter_batches, list_datasets, list_versions, trace_record
from keel.evals import get_result
from keel.index import list_indexes, search
from keel.monitor import cost_report, get_trace, get_trace_contents, list_feedback, list_traces, load_prices
from keel.registry import (
    get_model,
    get_prompt,
    get_run,
    list_models,
    list_prompts,
    list_runs,
    metric_series,
    model_card,
    model_history,
    prompt_history,
    render_card_markdown,
    render_prompt,
)
from keel.serve import deployment_history, get_deployment, list_deployments
from keel.store import Store, events, verify, walk
from keel.ui._app import PAGE, Console
from keel.ui._graph import lineage_svg
from keel.ui._series import series

__all__ = ["add_routes"]

# Overview counts: the objects a person asks "how many" about (the full table list is `keel status`).
OVERVIEW_TABLES = ("datasets", "dataset_versions", "runs", "model_versions", "prompt_versions", "deployments")


def _lineage(console: Console, request: Request, node: str, depth: int) -> tuple[list[Any], Any]:
    """The upstream hits around `node` and its lineage graph (up to `depth` edges and 50 nodes each way).

    No hits and no graph for a node that is not in the lineage graph (traces loaded in bulk have none).
    """
    with console.store.db.read() as conn:
        try:
            up = walk(conn, node, "upstream", depth=depth, limit=PAGE)
            down = walk(conn, node, "downstream", depth=depth, limit=PAGE)
        except NotFoundError:
            return [], None
    if not up and not down:
        return [], None
    return up, lineage_svg(node, up, down, request.scope.get("root_path", ""))


def _chart(series: dict[str, list[tuple[Any, float]]], x_range: tuple[float, float] | None = None) -> str:
    """A uPlot data block: x values shared by every series (steps or epoch seconds), None where one has no point.

    `x_range` fixes the x axis (a time window), else uPlot fits it to the points (and a single point gets
    an axis years wide). The JSON sits in a `<script>` block, so `<`, `>` and `&` are escaped: a model or
    run name holding `</script>` stays text.
    """
    xs = sorted({x for points in series.values() for x, _ in points})
    lookups = [dict(points) for points in series.values()]  # once per series, not once per x
    columns = [[lookup.get(x) for x in xs] for lookup in lookups]
    block: dict[str, Any] = {"labels": list(series), "data": [xs, *columns]}
    if x_range is not None:
        block["range"] = list(x_range)
    text = json.dumps(block)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def add_routes(app: FastAPI, console: Console) -> None:
    """Register every read-only page on `app`."""
    _overview_routes(app, console)
    _data_routes(app, console)
    _run_routes(app, console)
    _registry_routes(app, console)
    _serving_routes(app, console)


def _overview_routes(app: FastAPI, console: Console) -> None:
    @app.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        store = console.store
        counts = store.db.count_rows(OVERVIEW_TABLES)
        with store.db.read() as conn:
            recent = events(conn, limit=15)
        shown = {name: counts.get(name, 0) for name in OVERVIEW_TABLES}
        return console.render(request, "overview.html", title="Overview", counts=shown, recent=recent)

    @app.get("/audit", response_class=HTMLResponse)
    async def audit(request: Request, before: int | None = None, action: str | None = None) -> Response:
        store = console.store
        with store.db.read() as conn:
            page = events(conn, action=action or None, before_seq=before, limit=PAGE)
        nxt = page[-1].seq if len(page) == PAGE else None
        return console.render(request, "audit.html", title="Audit log", events=page, report=None, next=nxt,
                              action=action or "")  # fmt: skip

    @app.get("/audit/verify", response_class=HTMLResponse)
    async def audit_verify(request: Request) -> Response:
        # Its own page: verifying reads every event (one HMAC each), so it runs when asked, not on each visit.
        with console.store.db.read() as conn:
            report = verify(conn, key=console.store.audit_key)
        return console.render(request, "audit.html", title="Audit log", events=[], report=report, next=None,
                              action="")  # fmt: skip


def _data_routes(app: FastAPI, console: Console) -> None:
    @app.get("/datasets", response_class=HTMLResponse)
    async def datasets(request: Request) -> Response:
        return console.render(request, "datasets.html", title="Datasets", datasets=list_datasets(console.store))

    @app.get("/datasets/{name}", response_class=HTMLResponse)
    async def dataset(request: Request, name: str) -> Response:
        versions = list_versions(console.store, name)
        return console.render(request, "dataset.html", title=f"Dataset {name}", name=name, versions=versions)

    @app.get("/datasets/{name}/v{version}", response_class=HTMLResponse)
    async def dataset_version(request: Request, name: str, version: int, q: str = "", after: int = 0) -> Response:
        ref = f"{name}@v{version}"
        found = get_version(console.store, ref)
        rows, nxt = _records(console.acting(request), ref, q.strip(), after)
        _, graph = _lineage(console, request, f"dataset-version:{found.ref}", 2)
        return console.render(request, "records.html", title=f"Dataset {ref}", version=found, ref=ref, rows=rows,
                              q=q, next=nxt, after=after, graph=graph)  # fmt: skip

    @app.get("/records/{record_id}", response_class=HTMLResponse)
    async def record(request: Request, record_id: str) -> Response:
        found = trace_record(console.acting(request), record_id)  # its text: a restricted dataset's needs dataset.read
        return console.render(request, "record.html", title=f"Record {record_id}", record=found)

    @app.get("/datasets/{name}/diff", response_class=HTMLResponse)
    async def dataset_diff(request: Request, name: str, before: str = "", after: str = "") -> Response:
        versions = list_versions(console.store, name)
        diff = None
        if before and after:
            diff = diff_versions(console.acting(request), f"{name}@{before}", f"{name}@{after}")
        return console.render(request, "diff.html", title=f"Diff of {name}", name=name, versions=versions,
                              diff=diff, before=before, after=after)  # fmt: skip


def _records(store: Store, ref: str, query: str, after: int) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a version's records matching `query` (an exact id, or text it contains), from row `after` on.

    `store` acts as the signed-in principal: a `restricted` dataset's records need its `dataset.read`, which the
    console's own process principal would always hold.

    Records live in Arrow shards, not in a database table: the page is read batch by batch and stops as soon
    as it is full, so a search costs the rows scanned up to the page, never the whole version.
    """
    rows: list[dict[str, Any]] = []
    position = 0
    for batch in iter_batches(store, ref, columns=["id", "text", "source"]):
        if query:
            mask = pc.or_(pc.equal(batch["id"], query), pc.match_substring(batch["text"], query, ignore_case=True))
            indices = pc.indices_nonzero(mask).to_pylist()
        else:
            indices = list(range(batch.num_rows))
        for i in indices:
            if position >= after:
                row = batch.slice(i, 1).to_pylist()[0]
                rows.append({**row, "position": position})
                if len(rows) > PAGE:
                    return rows[:PAGE], rows[PAGE - 1]["position"] + 1
            position += 1
    return rows, None


def curation_view(report: dict[str, Any], recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the curation page shows from a run's report.json: drops by step and reason, PII found, near duplicates.

    Steps are in the recipe's order when the run's parameters hold it (report.json's keys are sorted).
    PII counts are the `found.<type>` counters of each step that has them (the pii step counts every span it
    found); near-duplicate figures are each global step's `dropped_to_kept` similarity summary (near_dedup's).
    """
    order = [name for entry in (recipe or {}).get("steps", []) for name in entry]
    reported = report.get("steps", {})
    steps = {name: reported[name] for name in [*order, *reported] if name in reported}
    drops = [(step, reason, n) for step, stats in steps.items() for reason, n in stats.get("dropped", {}).items()]
    by_reason: dict[str, int] = {}
    for _, reason, n in drops:
        by_reason[reason] = by_reason.get(reason, 0) + n
    pii = [(step, key.removeprefix("found."), n) for step, stats in steps.items()
           for key, n in stats.get("counters", {}).items() if key.startswith("found.")]  # fmt: skip
    near = []
    for step, facts in report.get("global", {}).items():
        summary = facts.get("dropped_to_kept")
        if summary is not None:
            top = max((b[2] for b in summary["histogram"]), default=0)
            near.append({"step": step, "facts": facts, "summary": summary, "top": top})
    return {"steps": steps, "drops": drops, "by_reason": sorted(by_reason.items(), key=lambda kv: -kv[1]),
            "pii": pii, "near": near}  # fmt: skip


def _run_routes(app: FastAPI, console: Console) -> None:
    @app.get("/runs/{run_id}/curation", response_class=HTMLResponse)
    async def curation(request: Request, run_id: str) -> Response:
        with console.store.db.read() as conn:
            found = get_run(conn, run_id)
        digest = found.artifacts.get("report.json")
        if found.kind != "curate" or digest is None:
            raise NotFoundError(f"run {found.id} is a {found.kind} run with no report.json, not a curation run",
                                hint="curation runs are listed on /runs?kind=curate")  # fmt: skip
        with console.store.blobs.open(digest) as handle:
            report = json.load(handle)
        return console.render(request, "curation.html", title=f"Curation run {found.id}", run=found, report=report,
                              view=curation_view(report, found.params.get("recipe")))  # fmt: skip

    @app.get("/runs", response_class=HTMLResponse)
    async def runs(request: Request, kind: str = "", status: str = "", sort: str = "", order: str = "desc",
                   after: str = "") -> Response:  # fmt: skip
        with console.store.db.read() as conn:
            page = list_runs(conn, kind=kind or None, status=status or None, sort_by=sort or None,
                             descending=order != "asc", limit=PAGE, after=after or None)  # fmt: skip
        metrics = sorted({key for run in page for key in run.metrics})
        nxt = page[-1].id if len(page) == PAGE else None
        return console.render(request, "runs.html", title="Runs", runs=page, metrics=metrics, next=nxt, kind=kind,
                              status=status, sort=sort, order=order)  # fmt: skip

    @app.get("/runs/compare", response_class=HTMLResponse)
    async def compare(request: Request, ids: str = "") -> Response:
        chosen = [i for i in ids.replace(",", " ").split() if i][:6]
        if len(chosen) < 2:
            raise InputError(f"expected two to six run ids to compare; got {len(chosen)}", hint="tick runs on /runs")
        with console.store.db.read() as conn:
            found = [get_run(conn, run_id) for run_id in chosen]
            series = {run.id: metric_series(conn, run.id) for run in found}
        keys = sorted({key for s in series.values() for key in s})
        charts = {key: _chart({run_id[-6:]: s.get(key, []) for run_id, s in series.items()}) for key in keys}
        params = sorted({key for run in found for key in run.params})
        differing = [p for p in params if len({json.dumps(run.params.get(p), sort_keys=True) for run in found}) > 1]
        return console.render(request, "compare.html", title="Compare runs", runs=found, charts=charts,
                              params=params, differing=differing)  # fmt: skip

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run(request: Request, run_id: str) -> Response:
        with console.store.db.read() as conn:
            found = get_run(conn, run_id)
            series = metric_series(conn, run_id)
        charts = {key: _chart({key: points}) for key, points in series.items()}
        return console.render(request, "run.html", title=f"Run {run_id}", run=found, charts=charts)


def _registry_routes(app: FastAPI, console: Console) -> None:
    @app.get("/models", response_class=HTMLResponse)
    async def models(request: Request) -> Response:
        return console.render(request, "models.html", title="Models", models=list_models(console.store))

    @app.get("/models/{name}", response_class=HTMLResponse)
    async def model(request: Request, name: str) -> Response:
        latest = get_model(console.store, name, with_files=False)
        versions = [get_model(console.store, f"{name}@v{v}", with_files=False) for v in range(latest.version, 0, -1)]
        history = model_history(console.store, name)
        # The results the lineage graph links to each version (what its card lists), newest version first.
        linked = [n for v in versions for n in model_card(console.store, f"{name}@v{v.version}")["evaluations"]]
        results = [get_result(console.store, node.removeprefix("eval-result:"), with_cases=False) for node in linked]
        return console.render(request, "model.html", title=f"Model {name}", name=name, versions=versions,
                              history=history, results=results)  # fmt: skip

    @app.get("/models/{name}/v{version}", response_class=HTMLResponse)
    async def model_version(request: Request, name: str, version: int) -> Response:
        ref = f"{name}@v{version}"
        card = render_card_markdown(model_card(console.store, ref))
        found = get_model(console.store, ref)
        _, graph = _lineage(console, request, f"model-version:{ref}", 2)
        return console.render(request, "model_version.html", title=f"Model {ref}", model=found, card=card, ref=ref,
                              graph=graph)  # fmt: skip

    @app.get("/prompts", response_class=HTMLResponse)
    async def prompts(request: Request) -> Response:
        return console.render(request, "prompts.html", title="Prompts", prompts=list_prompts(console.store))

    @app.get("/prompts/{name}", response_class=HTMLResponse)
    async def prompt(request: Request, name: str, version: int | None = None) -> Response:
        latest = get_prompt(console.store, name)
        shown = get_prompt(console.store, f"{name}@v{version}") if version else latest
        variables = {v: request.query_params.get(f"var_{v}", "") for v in shown.variables}
        rendered = None
        if any(variables.values()):
            rendered = render_prompt(console.store, f"{name}@v{shown.version}", variables)
        versions = [get_prompt(console.store, f"{name}@v{v}") for v in range(latest.version, 0, -1)]
        return console.render(request, "prompt.html", title=f"Prompt {name}", name=name, prompt=shown,
                              versions=versions, variables=variables, rendered=rendered,
                              history=prompt_history(console.store, name))  # fmt: skip

    @app.get("/indexes", response_class=HTMLResponse)
    async def indexes(request: Request, ref: str = "", q: str = "", mode: str = "keyword") -> Response:
        hits = search(console.store, ref, q, k=10, mode=mode) if ref and q else []  # type: ignore[arg-type]
        return console.render(request, "indexes.html", title="Indexes", indexes=list_indexes(console.store),
                              ref=ref, q=q, mode=mode, hits=hits)  # fmt: skip


def _serving_routes(app: FastAPI, console: Console) -> None:
    @app.get("/deployments", response_class=HTMLResponse)
    async def deployments(request: Request) -> Response:
        found = list_deployments(console.store)
        return console.render(request, "deployments.html", title="Deployments", deployments=found)

    @app.get("/deployments/{name}", response_class=HTMLResponse)
    async def deployment(request: Request, name: str, hours: int = 24) -> Response:
        found = get_deployment(console.store, name)
        history = deployment_history(console.store, name)[::-1]
        since = console.store.clock() - timedelta(hours=max(1, min(hours, 24 * 90)))
        bucket = timedelta(minutes=5) if hours <= 24 else timedelta(hours=1)
        # Aggregated in the database (counts, sums and a latency histogram per bucket; see _series): the charts
        # use the buckets, the table adds them up per version; its latency column is the worst bucket's p95.
        rows = series(console.store, name, since, bucket)
        charts = _monitor_charts(rows, (since.timestamp(), console.store.clock().timestamp()))
        totals = _totals(rows)
        return console.render(request, "deployment.html", title=f"Deployment {name}", deployment=found,
                              history=history, charts=charts, totals=totals, hours=hours)  # fmt: skip

    @app.get("/deployments/{name}/cost", response_class=HTMLResponse)
    async def cost(
        request: Request, name: str, api: str = "gpt-4o-mini", hours: float = 24.0, hardware: float | None = None
    ) -> Response:
        # Reads the window's traces (busy time needs each request's span), so it is its own page, not part of
        # the deployment page's budget; the same report as `keel monitor cost`.
        get_deployment(console.store, name)  # 404 for an unknown deployment
        prices = load_prices(console.store.settings.workspace)
        hours = max(0.1, min(hours, 24.0 * 90))
        until = console.store.clock()
        report, missing = None, ""
        if hardware is None and prices.hardware is None:
            missing = "Give the serving machine's cost per hour (or set `hardware:` in api_prices.yaml)."
        else:
            report = cost_report(console.store, name, api=api, since=until - timedelta(hours=hours), until=until,
                                 hardware_cost_per_hour=hardware)  # fmt: skip
        return console.render(request, "cost.html", title=f"Cost of {name}", name=name, report=report, prices=prices,
                              api=api, hours=hours, hardware=hardware, missing=missing)  # fmt: skip

    @app.get("/traces", response_class=HTMLResponse)
    async def traces(request: Request, deployment: str = "", errors: bool = False, after: str = "") -> Response:
        page = list_traces(console.store, deployment=deployment or None, errors_only=errors, limit=PAGE,
                           after=after or None)  # fmt: skip
        nxt = page[-1].id if len(page) == PAGE else None
        return console.render(request, "traces.html", title="Traces", traces=page, next=nxt, deployment=deployment,
                              errors=errors)  # fmt: skip

    @app.get("/traces/{trace_id}", response_class=HTMLResponse)
    async def trace(request: Request, trace_id: str) -> Response:
        found = get_trace(console.store, trace_id)
        content = get_trace_contents(console.store, [found.id]).get(found.id)
        feedback = list_feedback(console.store, trace_id=found.id, limit=None)
        lineage, graph = _lineage(console, request, f"trace:{found.id}", 3)
        return console.render(request, "trace.html", title=f"Trace {found.id}", trace=found, content=content,
                              feedback=feedback, lineage=lineage, graph=graph)  # fmt: skip


def _totals(rows: list[Any]) -> list[dict[str, Any]]:
    """Per model version, the window's sums of bucketed summary rows, and the worst bucket's p95 latency."""
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        version = row.model_version or "—"
        empty = {"requests": 0, "errors": 0, "tokens_out": 0, "cost": 0.0, "feedback": 0, "worst_p95_ms": 0.0}
        t = totals.setdefault(version, {"model_version": version, **empty})
        t["requests"] += row.requests
        t["errors"] += row.errors
        t["tokens_out"] += row.tokens_out
        t["cost"] += row.cost
        t["feedback"] += row.feedback
        t["worst_p95_ms"] = max(t["worst_p95_ms"], row.p95_ms or 0.0)
    for t in totals.values():
        t["error_rate"] = t["errors"] / t["requests"] if t["requests"] else 0.0
    return list(totals.values())


def _monitor_charts(rows: list[Any], window: tuple[float, float]) -> dict[str, str]:
    """Latency, tokens, cost and errors over time, one line per model version."""
    charts: dict[str, str] = {}
    picks: dict[str, Callable[[Any], float]] = {
        "p95 latency (ms)": lambda r: r.p95_ms,
        "tokens out": lambda r: r.tokens_out,
        "cost": lambda r: r.cost,
        "errors": lambda r: r.errors,
        "requests": lambda r: r.requests,
    }
    for title, pick in picks.items():
        series: dict[str, list[tuple[Any, float]]] = {}
        for row in rows:
            if row.start is not None:
                series.setdefault(row.model_version or "-", []).append((int(row.start.timestamp()), pick(row)))
        charts[title] = _chart(series, window)
    return charts
