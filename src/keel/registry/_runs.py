"""Runs: one execution of a job, with parameters, metric series, artifacts, environment and lineage.

`start_run` is a context manager: the run is `running` inside it, `finished` when the block ends,
`failed` (with the error) when it raises, `killed` on Ctrl-C. A process killed outright (SIGKILL, out of
memory, power) cannot say so: its run stays `running`, and is reported `lost` once the process it
recorded is gone from this host; `close_run` ends it by hand. Metric values are written as they are
logged, so a crashed job keeps its curve. Querying (`list_runs`) filters on indexed parameter rows
and sorts on each metric's latest value, never by reading every run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Select, and_, func, or_, select, update

from keel.core.clock import format_time
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json, new_ulid
from keel.govern._access import require
from keel.registry._env import capture_environment, process_alive, process_identity
from keel.store import Store, add_edge, insert_for, open_store
from keel.store.schema import run_artifacts, run_latest_metrics, run_metrics, run_params, runs

__all__ = [
    "Run",
    "RunInfo",
    "RunStatus",
    "close_run",
    "count_runs",
    "get_run",
    "list_runs",
    "metric_series",
    "start_run",
]

RunStatus = Literal["running", "finished", "failed", "killed"]
_KIND_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


class Run:
    """A live run: log metrics, artifacts, inputs and outputs to it. Made by `start_run`.

    Examples:
        >>> with start_run("train", {"lr": 3e-4, "epochs": 2}) as run:  # doctest: +SKIP
        ...     run.log_metric("loss", 2.31, step=1)
        ...     run.log_input("dataset-version:9f2c…")
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.id = run_id
        self._steps: dict[str, int] = {}

    @property
    def node(self) -> str:
        """The run's lineage node id."""
        return f"run:{self.id}"

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record one value of metric `key`; `step` defaults to one past the last step logged for it."""
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Record several metrics at one step, in one transaction."""
        at = self.store.clock()
        rows: list[dict[str, Any]] = []
        for key, value in values.items():
            if not key or len(key) > 255:
                raise InputError(f"expected a metric name of 1 to 255 characters; got {key!r}")
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise InputError(f"metric {key!r} must be a finite number; got {value!r}")
            this_step = step if step is not None else self._steps.get(key, -1) + 1
            rows.append({"run_id": self.id, "key": key, "step": this_step, "value": number, "at": at})
        with self.store.db.write() as conn:
            for row in rows:
                conn.execute(
                    insert_for(conn, run_metrics)
                    .values(**row)
                    .on_conflict_do_update(index_elements=["run_id", "key", "step"], set_={"value": row["value"]})
                )
                latest = insert_for(conn, run_latest_metrics).values(
                    run_id=self.id, key=row["key"], step=row["step"], value=row["value"]
                )
                # Keep the value of the highest step: a late write for an earlier step changes nothing.
                conn.execute(
                    latest.on_conflict_do_update(
                        index_elements=["run_id", "key"],
                        set_={"step": latest.excluded.step, "value": latest.excluded.value},
                        where=run_latest_metrics.c.step <= latest.excluded.step,
                    )
                )
        for row in rows:  # only after the write succeeded, so a rejected batch leaves no gap
            self._steps[row["key"]] = max(row["step"], self._steps.get(row["key"], row["step"]))

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> list[str]:
        """Store a file, or every file under a directory, as blobs attached to this run.

        Args:
            path: A file or directory.
            name: The artifact path to record (default: the file or directory name).

        Returns:
            The artifact paths recorded.
        """
        source = Path(path)
        if not source.exists():
            raise InputError(f"expected a file or directory to log as an artifact; {source} does not exist")
        base = name or source.name
        files = (
            [(base, source)]
            if source.is_file()
            else [(f"{base}/{p.relative_to(source).as_posix()}", p) for p in sorted(source.rglob("*")) if p.is_file()]
        )
        # Upload first, each file in its own short transaction: a multi-GB file must not hold the
        # database's write lock while it is hashed and copied.
        uploaded = [(artifact, self.store.put_blob(file)) for artifact, file in files]
        recorded = []
        with self.store.db.write() as conn:
            for artifact, info in uploaded:
                statement = insert_for(conn, run_artifacts).values(
                    run_id=self.id, path=artifact, digest=info.digest, size=info.size
                )
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["run_id", "path"], set_={"digest": info.digest, "size": info.size}
                    )
                )
                recorded.append(artifact)
        return recorded

    def log_input(self, node: str, kind: str = "used_by") -> None:
        """Record that this run read `node` (a dataset version, a model version, …)."""
        with self.store.db.write() as conn:
            add_edge(conn, node, self.node, kind, at=self.store.clock())

    def log_output(self, node: str, kind: str = "produced") -> None:
        """Record that this run made `node`."""
        with self.store.db.write() as conn:
            add_edge(conn, self.node, node, kind, at=self.store.clock())

    def _finish(self, status: RunStatus, error: str | None = None, *, if_running: bool = False, **audit: Any) -> bool:
        """Record how the run ended (only if it is still `running`, with `if_running`); False if it was not."""
        ended = update(runs).where(runs.c.id == self.id)
        if if_running:
            ended = ended.where(runs.c.status == "running")
        with self.store.db.write() as conn:
            if conn.execute(ended.values(status=status, error=error, ended_at=self.store.clock())).rowcount != 1:
                return False
            self.store.audit(conn, "run.end", self.node, {"status": status, **audit})
        return True


def close_run(
    store: Store, run_id: str, status: RunStatus = "killed", reason: str | None = None, *, force: bool = False
) -> RunInfo:
    """End a `running` run whose process cannot: killed outright, or on a machine that is gone.

    Args:
        store: The workspace store.
        run_id: The run (or a unique prefix of its id).
        status: `killed` or `failed`.
        reason: Kept as the run's error; by default says where its process was.
        force: Close it even though its process still runs on this host.

    Returns:
        The closed run.
    """
    if status not in ("killed", "failed"):
        raise InputError(f"expected status 'killed' or 'failed' to close a run; got {status!r}")
    with store.db.read() as conn:
        run = get_run(conn, run_id)
    if run.status != "running":
        raise InputError(f"run {run.id} is already {run.status}; only a running run can be closed")
    process = run.env.get("process") or {}
    if process_alive(process) and not force:
        raise InputError(
            f"run {run.id} is still running here (pid {process.get('pid')})",
            hint="stop that process (its run then closes itself), or pass force=True / --force",
        )
    where = f"pid {process.get('pid')} on {process.get('host')}" if process else "a process that was not recorded"
    error = reason or f"closed by hand: {where} ended without closing the run"
    # Only if still running: its process may have closed it meanwhile.
    if not Run(store, run.id)._finish(status, error, if_running=True, closed_by_hand=True):
        raise InputError(f"run {run.id} ended while it was being closed; nothing changed")
    with store.db.read() as conn:
        return get_run(conn, run.id)


def _flatten_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Top-level parameters as canonical JSON text, so `lr=0.001` filters the same however it was typed."""
    return {str(key): canonical_json(value) for key, value in params.items()}


@contextmanager
def start_run(
    kind: str,
    params: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    inputs: Sequence[str] = (),
    seed: int | None = None,
    store: Store | None = None,
) -> Iterator[Run]:
    """Start a run; it ends `finished`, `failed` (re-raising the error) or `killed` with the block.

    Args:
        kind: What the run does: `train`, `eval`, `curate`, `index`, …
        params: JSON-serialisable parameters; top-level keys become filterable.
        name: An optional human label.
        inputs: Lineage node ids the run reads (edges `used_by` to the run).
        seed: The random seed, recorded with the environment.
        store: The workspace store; opened from the current directory if omitted.

    Yields:
        The live run.
    """
    if not kind or not set(kind) <= _KIND_CHARS or len(kind) > 64:
        raise InputError(f"expected a run kind such as 'train' or 'eval' (lowercase, digits, '-', '_'); got {kind!r}")
    params = dict(params or {})
    try:
        params_json = canonical_json(params)
    except (TypeError, ValueError) as exc:
        raise InputError(f"expected JSON-serialisable run parameters; {exc}") from None
    own_store = store is None
    store = store or open_store()
    run = Run(store, new_ulid())
    env = {**capture_environment(seed=seed), "process": process_identity()}
    try:
        require(store, "run.write", f"run:{name or kind}")
        with store.db.write() as conn:
            conn.execute(
                runs.insert().values(
                    id=run.id,
                    kind=kind,
                    name=name,
                    status="running",
                    params=params_json,
                    env=canonical_json(env),
                    created_by=store.actor,
                    started_at=store.clock(),
                )
            )
            flat = _flatten_params(params)
            if flat:
                conn.execute(run_params.insert(), [{"run_id": run.id, "key": k, "value": v} for k, v in flat.items()])
            for node in inputs:
                add_edge(conn, node, run.node, "used_by", at=store.clock())
            store.audit(conn, "run.start", run.node, {"kind": kind, "params": sorted(flat)})
    except BaseException:
        if own_store:
            store.close()
        raise
    try:
        yield run
    except KeyboardInterrupt:
        run._finish("killed", "interrupted")
        raise
    except BaseException as exc:
        run._finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    else:
        run._finish("finished")
    finally:
        if own_store:
            store.close()


@dataclass
class RunInfo:
    """A stored run, with its latest metric values and artifacts."""

    id: str
    kind: str
    name: str | None
    status: str
    params: dict[str, Any]
    env: dict[str, Any]
    error: str | None
    created_by: str
    started_at: datetime
    ended_at: datetime | None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    lost: bool = False  # `running`, but the process that ran it is gone from this host

    def to_json(self, *, with_env: bool = True) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "lost": self.lost,
            "params": self.params,
            "metrics": self.metrics,
            "artifacts": self.artifacts,
            "error": self.error,
            "created_by": self.created_by,
            "started_at": format_time(self.started_at),
            "ended_at": format_time(self.ended_at) if self.ended_at else None,
        }
        if with_env:
            data["env"] = self.env
        return data


def _info(row: Any, metrics: dict[str, float], artifacts: dict[str, str], process: Any = None) -> RunInfo:
    env = json.loads(getattr(row, "env", None) or "{}")
    if process is None:
        process = env.get("process")
    return RunInfo(
        id=row.id,
        kind=row.kind,
        name=row.name,
        status=row.status,
        params=json.loads(row.params),
        env=env,
        error=row.error,
        created_by=row.created_by,
        started_at=row.started_at,
        ended_at=row.ended_at,
        metrics=metrics,
        artifacts=artifacts,
        lost=row.status == "running" and process_alive(process) is False,
    )


def _latest(conn: Connection, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {run_id: {} for run_id in run_ids}
    if run_ids:
        query = select(run_latest_metrics).where(run_latest_metrics.c.run_id.in_(run_ids))
        for row in conn.execute(query.order_by(run_latest_metrics.c.key)):
            found[row.run_id][row.key] = row.value
    return found


def get_run(conn: Connection, run_id: str) -> RunInfo:
    """One run by id (a unique prefix of at least 6 characters also works)."""
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None and len(run_id) >= 6:
        matches = conn.execute(select(runs).where(runs.c.id.startswith(run_id.upper())).limit(2)).all()
        row = matches[0] if len(matches) == 1 else None
        if len(matches) > 1:
            raise InputError(f"run id prefix {run_id!r} matches more than one run; give more characters")
    if row is None:
        raise NotFoundError(f"no run {run_id!r} in this workspace", hint="list runs with `keel run list`")
    artifacts = {
        a.path: a.digest
        for a in conn.execute(
            select(run_artifacts).where(run_artifacts.c.run_id == row.id).order_by(run_artifacts.c.path)
        )
    }
    return _info(row, _latest(conn, [row.id])[row.id], artifacts)


def metric_series(conn: Connection, run_id: str, key: str | None = None) -> dict[str, list[tuple[int, float]]]:
    """Each metric's (step, value) series for a run, in step order."""
    query = select(run_metrics.c.key, run_metrics.c.step, run_metrics.c.value).where(run_metrics.c.run_id == run_id)
    if key is not None:
        query = query.where(run_metrics.c.key == key)
    series: dict[str, list[tuple[int, float]]] = {}
    for row in conn.execute(query.order_by(run_metrics.c.key, run_metrics.c.step)):
        series.setdefault(row.key, []).append((int(row.step), float(row.value)))
    return series


def list_runs(
    conn: Connection,
    *,
    kind: str | None = None,
    status: str | None = None,
    params: Mapping[str, Any] | None = None,
    sort_by: str | None = None,
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    after: str | None = None,
) -> list[RunInfo]:
    """Runs matching every filter, a page at a time.

    Args:
        conn: A connection.
        kind: Only runs of this kind.
        status: Only runs with this status.
        params: Only runs whose top-level parameter equals each given value.
        sort_by: A metric to sort by (its latest value; runs without it are left out),
            else newest first.
        descending: Sort direction for `sort_by`.
        limit: Page size.
        offset: Runs to skip.
        after: The last run id of the previous page: the page starts after it in this order (keyset
            paging, which costs the same at any depth; the console uses it instead of `offset`).

    Returns:
        One page of runs with their latest metrics (environments omitted for speed).
    """
    flat = _flatten_params(params or {})
    if sort_by is None:
        page = select(runs.c.id)
        for i, (key, value) in enumerate(flat.items()):
            p = run_params.alias(f"p{i}")
            page = page.join(p, and_(p.c.run_id == runs.c.id, p.c.key == key, p.c.value == value))
        page = _where_run(page.order_by(runs.c.id.desc()), kind, status)
        if after is not None:
            page = page.where(runs.c.id < after)
    else:
        page = _page_by_metric(conn, flat, sort_by, descending, kind, status, after)
    # Find the page's ids from indexes alone, then read just those runs: sorting a thousand
    # matching rows with their params text costs ten times more than sorting their ids.
    ids = list(conn.execute(page.limit(limit).offset(offset)).scalars())
    by_id = {row.id: row for row in conn.execute(select(*_LIST_COLUMNS).where(runs.c.id.in_(ids)))}
    latest = _latest(conn, ids)
    running = [run_id for run_id in ids if by_id[run_id].status == "running"]  # few: read their process record
    processes = {
        row.id: json.loads(row.env or "{}").get("process")
        for row in conn.execute(select(runs.c.id, runs.c.env).where(runs.c.id.in_(running)))
    }
    return [_info(by_id[run_id], latest[run_id], {}, processes.get(run_id)) for run_id in ids]


def _where_run(query: Select[Any], kind: str | None, status: str | None) -> Select[Any]:
    if kind is not None:
        query = query.where(runs.c.kind == kind)
    if status is not None:
        query = query.where(runs.c.status == status)
    return query


_LIST_COLUMNS = (
    runs.c.id,
    runs.c.kind,
    runs.c.name,
    runs.c.status,
    runs.c.params,
    runs.c.error,
    runs.c.created_by,
    runs.c.started_at,
    runs.c.ended_at,
)

# Below this many runs matching every filter, reading the matches and sorting them is cheapest;
# above it, walking the metric's sorted index and checking filters per run finds a page sooner.
# At 100,000 runs a filter matching a third of them takes 165 ms one way and 2 ms the other
# (benchmarks/registry.py); neither database's planner can know which case a value falls in.
SORT_FIRST_MIN_MATCHES = 2_000


def _matches_at_least(conn: Connection, key: str, value: str, n: int) -> bool:
    capped = select(run_params.c.run_id).where(run_params.c.key == key, run_params.c.value == value).limit(n)
    return int(conn.scalar(select(func.count()).select_from(capped.subquery())) or 0) >= n


def _page_by_metric(
    conn: Connection,
    flat: dict[str, str],
    sort_by: str,
    descending: bool,
    kind: str | None,
    status: str | None,
    after: str | None = None,
) -> Select[Any]:
    m = run_latest_metrics.alias("sort_metric")
    order = (m.c.value.desc(), m.c.run_id.desc()) if descending else (m.c.value, m.c.run_id)
    page = select(m.c.run_id).where(m.c.key == sort_by)
    if after is not None:
        last = run_latest_metrics.alias("last")
        at = select(last.c.value).where(last.c.run_id == after, last.c.key == sort_by).scalar_subquery()
        # A range on (key, value) the index answers, then the tie-break on run_id within it.
        if descending:
            page = page.where(m.c.value <= at, or_(m.c.value < at, m.c.run_id < after))
        else:
            page = page.where(m.c.value >= at, or_(m.c.value > at, m.c.run_id > after))
    if all(_matches_at_least(conn, k, v, SORT_FIRST_MIN_MATCHES) for k, v in flat.items()):
        for key, value in flat.items():  # walk the metric's index, checking each run's filters
            p = run_params.alias()
            page = page.where(
                select(p.c.run_id).where(p.c.run_id == m.c.run_id, p.c.key == key, p.c.value == value).exists()
            )
    else:  # read the few matches, then sort them
        first, *others = flat.items()
        p0 = run_params.alias("p0")
        matches = select(p0.c.run_id).where(p0.c.key == first[0], p0.c.value == first[1])
        for i, (key, value) in enumerate(others, start=1):
            p = run_params.alias(f"p{i}")
            matches = matches.join(p, and_(p.c.run_id == p0.c.run_id, p.c.key == key, p.c.value == value))
        # MATERIALIZED keeps PostgreSQL from folding the matches back into a walk of the metric's
        # index, which its cost model prefers at 1% selectivity and which is 3x slower there.
        fenced = matches.cte("matches").prefix_with("MATERIALIZED")
        page = page.join(fenced, fenced.c.run_id == m.c.run_id)
    if kind is not None or status is not None:
        page = _where_run(page.join(runs, runs.c.id == m.c.run_id), kind, status)
    return page.order_by(*order)


def count_runs(conn: Connection) -> int:
    """How many runs the workspace holds."""
    return int(conn.scalar(select(func.count()).select_from(runs)) or 0)
