"""The Ray engine: the same recipe, stages and report as `LocalEngine`, run as Ray Data datasets.

Input files are read by Ray tasks into Arrow blocks of `shard_size` records, each row tagged with its input
position (`_order`: file index << 32 | record number), so "first in input order" means the same here as
locally. Per-record steps run as `map_batches` over those blocks; the two dedup steps run as distributed
phases (keel.curate.ray._dedup) whose compact decisions (the duplicates' `_order` numbers or ids) are then
applied by the steps' own `apply_decision` in the next stage's `map_batches`. Blocks keep input order
through the stages; the last stage's tasks write each block as an output part, which the driver names
`data/part-NNNNN.parquet` in that order, so the kept records, their order, their columns, the parts and every
report counter match the local engine's. Tasks count into files in a per-run work folder, which the driver
adds up. Steps know nothing of Ray, and Ray is imported only when a run starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from keel.core.errors import ConfigError, InputError, KeelError
from keel.curate._basic_steps import ExactDedupParams, ExactDedupStep
from keel.curate._duplicate_ids import ids_can_repeat_across, repeats_across_files, without_ids
from keel.curate._engine import (
    _PARQUET,
    CurationReport,
    Progress,
    _file_shards,
    _published,
    _run_stage_steps,
    _steps_for,
    _tune_allocator,
    _write_asides,
    _write_json,
    run_warnings,
)
from keel.curate._near_dedup import NearDedupParams, NearDedupStep
from keel.curate._process import lock_output
from keel.curate._recipe import Recipe, ResolvedInput
from keel.curate._step import GlobalStep, Step, StepStats

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["RayEngine"]

_ORDER = "_order"
_FILE_SHIFT = 32  # _order = file index << 32 | record number within the file


# --- work done in Ray tasks ----------------------------------------------------------------------


def _read_file(index: int, source: ResolvedInput, *, shard_size: int, strict: bool, tally: str) -> Iterator[pa.Table]:
    """Read one input file as record tables of `shard_size` rows with `_order` (a streaming Ray task)."""
    problems: list[dict[str, Any]] = []
    records = 0
    for shard in _file_shards(source, shard_size, strict, problems):
        records += shard.num_rows
        yield _numbered(shard, index, records)
    _write_json({"records": records, "problems": problems}, Path(tally) / f"read-{index:05d}.json")


def _read_whole_file(index: int, source: ResolvedInput, **kwargs: Any) -> tuple[int, list[pa.Table]]:
    """`_read_file` as one ordinary task (Ray Client has no streaming tasks): how many shards, and the shards."""
    tables = list(_read_file(index, source, **kwargs))
    return len(tables), tables


def _pick(tables: list[pa.Table], number: int) -> pa.Table:
    return tables[number]


def _id_column(table: pa.Table) -> pa.Table:
    return table.select(["id"])


def _without_repeats(
    sources: list[ResolvedInput], per_file: list[list[Any]], tally: Path, strict: bool
) -> list[list[Any]]:
    """Each file's blocks without the records whose id an earlier file had, quarantined as the local engine does.

    Repeats within a file were set aside while it was read (`_file_shards`); this is the same cross-file pass
    as the local engine's (`repeats_across_files`), on the blocks' id columns. Usually it finds none and
    changes nothing.
    """
    if len(sources) < 2 or not ids_can_repeat_across(sources):
        return per_file
    import ray

    remote: Any = ray.remote
    id_tables = ray.get([remote(_id_column).remote(block) for blocks in per_file for block in blocks])
    ids, at = [], 0
    for blocks in per_file:
        chunks = [chunk for table in id_tables[at : at + len(blocks)] for chunk in table.column("id").chunks]
        ids.append(pa.chunked_array(chunks, pa.string()))
        at += len(blocks)
    drop = remote(without_ids)
    for index, repeats in repeats_across_files(sources, ids, strict).items():
        per_file[index] = [drop.remote(block, repeats.drop) for block in per_file[index]]
        path = tally / f"read-{index:05d}.json"
        read = json.loads(path.read_text(encoding="utf-8"))
        _write_json(
            {"records": read["records"] - len(repeats.problems), "problems": repeats.rename(read["problems"])}, path
        )
    return per_file


def _ray_client() -> bool:
    """Whether this driver reaches its cluster through Ray Client (`ray://`)."""
    import ray.util.client

    return bool(ray.util.client.ray.is_connected())  # type: ignore[no-untyped-call]


def _numbered(records: pa.Table, index: int, end: int) -> pa.Table:
    first = (index << _FILE_SHIFT) + end - records.num_rows
    return records.append_column(_ORDER, pa.array(np.arange(first, first + records.num_rows), pa.int64()))


_DECISIONS: dict[str, Any] = {}


def _decision(ref: Any) -> Any:
    """A global step's decision, fetched once per worker process and kept for the next batches."""
    import ray

    key = ref.hex()
    if key not in _DECISIONS:
        _DECISIONS.clear()  # one decision in use per stage; do not accumulate them across runs
        _DECISIONS[key] = ray.get(ref)
    return _DECISIONS[key]


def _global_decision(step: GlobalStep, order: pa.ChunkedArray, decision: Any) -> Any:
    """The decision as `apply_decision` takes it for this block."""
    if isinstance(step, ExactDedupStep):  # decided as global row numbers: here, positions in the block
        return set(np.flatnonzero(np.isin(order.to_numpy(), decision)).tolist())
    return decision  # near_dedup: {member id: kept id}, as decided locally


def _stage_batch(
    table: pa.Table,
    *,
    steps_json: str,
    stage: int,
    shard_size: int,
    own_workers: bool,
    positions: list[int],
    decision: Any,
    dropped: str | None,
    tally: str,
    observe: int | None,
    publish: str | None,
) -> pa.Table:
    """Run one stage's steps on one block, as the local engine runs them on one shard.

    The block's `_ORDER` column rides through the steps like any other column (steps keep the columns they do
    not know) and is left out of the dropped-record files. The stage's counters go to a file named after the
    stage and the block's first record, so a retried task overwrites its own count instead of adding to it.
    Then, where the block is: the global step at `observe` looks at the rows for its distributed decision (a
    column the next stage drops), or, in the last stage, the block is written to `publish` as an output part.
    """
    from keel.curate.ray._dedup import OBSERVED, with_observation

    if own_workers:  # a runtime this engine started; pooled workers of a shared cluster are left as they are
        _tune_allocator()
    steps = _steps_for(steps_json)
    table = table.drop_columns([name for name in OBSERVED if name in table.column_names])
    first = int(table.column(_ORDER)[0].as_py()) if table.num_rows else -1
    # A block is one shard of `shard_size` records (see _read_file): named as the local engine names it.
    shard = f"{first >> _FILE_SHIFT:05d}-{(first & ((1 << _FILE_SHIFT) - 1)) // shard_size:04d}"
    if positions and isinstance(step := steps[positions[0]], GlobalStep):
        decision = _global_decision(step, table.column(_ORDER), _decision(decision))
    table, stats, asides = _run_stage_steps(steps, positions, table, decision, keep_dropped=dropped is not None)
    if dropped is not None:
        _write_asides(steps, asides, Path(dropped), shard, drop=[_ORDER])
    if observe is not None:
        observer = steps[observe]
        assert isinstance(observer, GlobalStep)
        started = time.perf_counter()
        table = with_observation(observer, table)
        # Observing (e.g. computing MinHash signatures) is the global step's work: its time is counted there.
        stats[observe] = StepStats(seconds=time.perf_counter() - started)
    if first >= 0:  # an empty block counted nothing
        counts = {str(position): st.to_json() for position, st in stats.items()}
        _write_json(counts, Path(tally) / f"stage-{stage:03d}-{shard}.json")
    if publish is not None:
        return _write_part(table, Path(publish) / f"block-{shard}.parquet", first)
    return table


def _write_part(table: pa.Table, path: Path, first: int) -> pa.Table:
    """Write one output block as published (into the run's work folder); returns one row: first, rows, bytes."""
    size = 0
    if table.num_rows:
        table = _published(table.drop_columns([_ORDER]))
        pq.write_table(table, path, **_PARQUET)
        size = path.stat().st_size
    return pa.table({"first": [first], "rows": [table.num_rows], "bytes": [size], "path": [str(path)]})


# --- the driver ----------------------------------------------------------------------------------


def _user_error(exc: BaseException) -> KeelError | None:
    """The Keel error a Ray task raised, found in the chain Ray wraps it in."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KeelError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else (current.__cause__ or current.__context__)
    return None


class RayEngine:
    """Run recipes on a Ray cluster (or a local Ray runtime) with the same results as `LocalEngine`.

    Args:
        address: A Ray cluster address (`ray://host:10001`, `auto`); None starts a local runtime for the run.
        num_cpus: CPUs of the local runtime (ignored with an address); None: all of this machine's.
        object_store_mb: Object store size of the local runtime, in MB; None: Ray's default (30% of memory).
            Blocks that do not fit are spilled to disk, which a 360 MB corpus in a 500 MB store made ~25%
            slower (benchmarks/curation_ray.py).
        buckets: Hash buckets of the dedup shuffles (work units of the grouping phases).

    Examples:
        >>> report = RayEngine().run(load_recipe("recipe.yaml"))  # doctest: +SKIP
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        object_store_mb: int | None = None,
        buckets: int = 16,
    ) -> None:
        too_small = object_store_mb is not None and object_store_mb < 80
        if (num_cpus is not None and num_cpus < 1) or buckets < 1 or too_small:
            raise InputError(
                f"expected num_cpus >= 1, buckets >= 1 and object_store_mb >= 80; "
                f"got {num_cpus}, {buckets} and {object_store_mb}"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.buckets = buckets
        self._own_runtime = False

    def run(self, recipe: Recipe, *, strict: bool = False, progress: Progress | None = None) -> CurationReport:
        """Run `recipe` on Ray and write `data/`, `report.json` and `quarantine.jsonl` as the local engine does."""
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray engine needs Ray Data", hint="pip install 'ray[data]'") from None
        _check_supported(_steps_for(json.dumps(recipe.step_specs())))  # before paying for a Ray runtime
        started_here = not ray.is_initialized()
        self._own_runtime = started_here
        try:
            with warnings.catch_warnings():
                # Ray Data warns about its own deprecated settings when it builds its context; not ours to fix.
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
                if started_here:
                    self._init(ray)
                return self._run(recipe, strict, progress)
        except KeelError:
            raise
        except Exception as exc:
            user = _user_error(exc)
            if user is not None:
                raise user from None
            raise
        finally:
            if started_here:
                ray.shutdown()

    def _init(self, ray: Any) -> None:
        if self.address:
            ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
        else:
            ray.init(
                num_cpus=self.num_cpus,
                include_dashboard=False,
                object_store_memory=self.object_store_mb * 1024 * 1024 if self.object_store_mb else None,
                logging_level="WARNING",
                log_to_driver=False,
            )

    def _run(self, recipe: Recipe, strict: bool, progress: Progress | None) -> CurationReport:
        from ray.data.context import DataContext, ShuffleStrategy

        context = DataContext.get_current()
        options = context.execution_options
        saved = (context.enable_progress_bars, context.shuffle_strategy, context.op_resource_reservation_enabled,
                 options.preserve_order, context.target_max_block_size)  # fmt: skip
        context.enable_progress_bars = False
        # Per-operator reservations split a small cluster's CPUs between operators that never run at once here
        # (each stage is materialized before the next starts): on 2 CPUs one of them sat idle for most of each
        # map stage (ray.timeline: four 1 s blocks took 3.2 s, 2.1 s without).
        context.op_resource_reservation_enabled = False
        # Blocks stay in input order through the stages, so the output is written block by block, in order,
        # without a sort of the whole corpus (a shuffle of every byte) before publishing.
        options.preserve_order = True
        # A block is a shard and stays whole, as a shard does locally: Ray Data would split a map's output
        # above 128 MB (a 10,000-record shard of 13 KB documents), and each piece would become its own part.
        context.target_max_block_size = 1 << 40
        # Sort-based shuffles: hash shuffles start aggregator actors, which cost seconds per grouping phase.
        context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        # Ray Data logs three INFO lines per dataset it executes (a dozen per run) to the terminal; the run
        # reports its own progress. Its warnings and errors still show.
        # Two of its warnings are about the engine's own choices: progress bars off (the run reports its own),
        # and, on a runtime the engine started, "no available CPUs", read from a resource view that lags the
        # read tasks just finished (nothing else runs there). Elsewhere that one may be true and stays.
        ray_data_log = logging.getLogger("ray.data")
        log_level = ray_data_log.level
        ray_data_log.setLevel(max(logging.WARNING, log_level))
        notices = _Silence("Progress bars disabled", *(["available CPUs"] if self._own_runtime else []))
        quieted = [logging.getLogger(name) for name in ("ray.data._internal.progress", "ray.data.dataset")]
        for logger in quieted:
            logger.addFilter(notices)
        try:
            return self._execute(recipe, strict, progress)
        finally:
            for logger in quieted:
                logger.removeFilter(notices)
            ray_data_log.setLevel(log_level)
            (context.enable_progress_bars, context.shuffle_strategy, context.op_resource_reservation_enabled,
             options.preserve_order, context.target_max_block_size) = saved  # fmt: skip

    def _execute(self, recipe: Recipe, strict: bool, progress: Progress | None) -> CurationReport:
        started = time.perf_counter()
        sources = recipe.resolve_inputs()
        steps = _steps_for(json.dumps(recipe.step_specs()))
        report = CurationReport(output_dir=recipe.output_dir, files=len(sources))
        recipe.output_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_output(recipe.output_dir)  # one run per output folder, as on the local engine
        # Tasks leave what they counted in this run's folder (the output folder is on storage every node sees).
        tally = recipe.output_dir / ".keel-work" / f"ray-{uuid.uuid4().hex[:12]}"
        tally.mkdir(parents=True)
        try:
            report = self._steps_and_files(recipe, sources, steps, report, tally, strict, progress)
        finally:
            shutil.rmtree(tally, ignore_errors=True)
            lock.release()
        report.warnings += run_warnings(report, steps, recipe)
        report.seconds = time.perf_counter() - started
        _write_json(report.to_json(), recipe.output_dir / "report.json")
        return report

    def _steps_and_files(self, recipe: Recipe, sources: list[ResolvedInput], steps: list[Step],
                         report: CurationReport, tally: Path, strict: bool,
                         progress: Progress | None) -> CurationReport:  # fmt: skip

        _say(progress, "read", 0)
        ds = self._read(sources, recipe, tally, strict)
        _say(progress, "read", 1)
        final = self._stages(ds, steps, recipe, tally, report, progress)
        self._publish(final, recipe, report, progress)
        for path in sorted(tally.glob("stage-*.json")):
            for position, data in json.loads(path.read_text(encoding="utf-8")).items():
                report.steps[steps[int(position)].name].merge(StepStats.from_json(data))
        with (recipe.output_dir / "quarantine.jsonl").open("w", encoding="utf-8") as out:
            for path in sorted(tally.glob("read-*.json")):  # in input order: names carry the file index
                read = json.loads(path.read_text(encoding="utf-8"))
                report.records_read += read["records"]
                report.quarantined.update(Counter(p["reason"] for p in read["problems"]))
                out.writelines(json.dumps(p, sort_keys=True) + "\n" for p in read["problems"])
        return report

    @staticmethod
    def _read(sources: list[ResolvedInput], recipe: Recipe, tally: Path, strict: bool) -> Dataset:
        """The input files as blocks of `shard_size` records in input order, each row tagged with `_order`."""
        import ray
        import ray.data

        kwargs: dict[str, Any] = {"shard_size": recipe.shard_size, "strict": strict, "tally": str(tally)}
        remote: Any = ray.remote  # Ray's stubs type generator tasks as taking no arguments
        if _ray_client():  # no streaming tasks: each file read whole, then each shard taken out as its own block
            read_whole = remote(num_returns=2)(_read_whole_file)
            files = [read_whole.remote(index, source, **kwargs) for index, source in enumerate(sources)]
            counts = ray.get([count for count, _ in files])
            pick = remote(_pick)
            per_file = [
                [pick.remote(tables, n) for n in range(count)] for (_, tables), count in zip(files, counts, strict=True)
            ]
        else:
            # Each shard of `shard_size` records becomes one block, as it is one shard for the local engine: had
            # the files been read by map_batches, Ray Data would join a task's tables into blocks of up to 128 MB,
            # so a corpus in one file made one block and the next stages ran on one CPU (1.59x the local engine's
            # time for 16k documents in one file vs 1.2x in four).
            read_file = remote(num_returns="streaming")(_read_file)
            streams = [read_file.remote(index, source, **kwargs) for index, source in enumerate(sources)]
            per_file = [list(stream) for stream in streams]  # in input order, files read in parallel
            ray.get([stream.completed() for stream in streams])  # their CPUs are free before the next stage
        refs = [block for blocks in _without_repeats(sources, per_file, tally, strict) for block in blocks]
        ds: Dataset = ray.data.from_arrow_refs(refs) if refs else ray.data.from_arrow(_numbered([], 0, 0))
        return ds

    def _stages(self, ds: Dataset, steps: list[Step], recipe: Recipe, tally: Path, report: CurationReport,
                progress: Progress | None) -> Dataset:  # fmt: skip
        import ray

        for step in steps:
            report.steps[step.name] = StepStats()
        steps_json = json.dumps(recipe.step_specs())
        dropped = str(recipe.output_dir / "dropped") if recipe.keep_dropped else None
        start, stage, decision = 0, 0, None
        while True:
            global_at = next(
                (i for i in range(start + (stage > 0), len(steps)) if isinstance(steps[i], GlobalStep)), None
            )
            end = global_at if global_at is not None else len(steps)
            positions = list(range(start, end))
            label = f"stage {stage + 1}: {', '.join(steps[p].name for p in positions) or '—'}"
            _say(progress, label, 0)
            # Each stage's map also does, where the block is, what comes next: the global step's observation
            # for its decision, or (last stage) writing the block as an output part.
            kwargs: dict[str, Any] = {"steps_json": steps_json, "stage": stage, "shard_size": recipe.shard_size,
                                      "own_workers": self._own_runtime, "positions": positions,
                                      "decision": decision,
                                      "dropped": dropped, "tally": str(tally), "observe": global_at,
                                      "publish": str(tally) if global_at is None else None}  # fmt: skip
            ds = ds.map_batches(partial(_stage_batch, **kwargs), batch_size=None, batch_format="pyarrow")
            ds = ds.materialize()
            _say(progress, label, 1)
            if global_at is None:
                return ds
            step = steps[global_at]
            _say(progress, f"{step.name}: distributed decision", 0)
            phase = time.perf_counter()
            decision = ray.put(self._decide(step, ds, report))
            report.steps[step.name].seconds += time.perf_counter() - phase
            _say(progress, f"{step.name}: distributed decision", 1)
            start, stage = global_at, stage + 1

    def _decide(self, step: Step, ds: Dataset, report: CurationReport) -> Any:
        from keel.curate.ray._dedup import exact_duplicates, near_duplicates

        if isinstance(step, ExactDedupStep):
            assert isinstance(step.params, ExactDedupParams)
            drops = exact_duplicates(ds, self.buckets)
            report.global_reports[step.name] = step.report([drops])
            return drops
        if isinstance(step, NearDedupStep):
            assert isinstance(step.params, NearDedupParams)
            labels, facts = near_duplicates(ds, step.params, self.buckets)
            report.global_reports[step.name] = facts
            return labels
        raise AssertionError(f"unsupported global step {step.name!r} passed _check_supported")

    @staticmethod
    def _publish(parts: Dataset, recipe: Recipe, report: CurationReport, progress: Progress | None) -> None:
        """Move the parts the last stage wrote (one per non-empty block) into `data/`, numbered in input order."""
        import ray

        _say(progress, "write", 0)
        tables = [t for t in ray.get(parts.to_arrow_refs()) if t.num_rows]
        written = pa.concat_tables(tables).sort_by("first").to_pylist() if tables else []
        data_dir = recipe.output_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        for stale in data_dir.glob("part-*.parquet"):
            stale.unlink()
        for part in (p for p in written if p["rows"]):
            name = f"part-{len(report.shards):05d}.parquet"
            os.replace(part["path"], data_dir / name)
            report.shards.append(name)
            report.records_out += part["rows"]
            report.bytes_out += part["bytes"]
        _say(progress, "write", 1)


def _check_supported(steps: list[Step]) -> None:
    """Refuse, before any work, what the distributed phases do not implement."""
    for step in steps:
        if step.adds_rows:  # its new rows would have no place in the global row order the dedup phases use
            raise ConfigError(
                f"the ray engine does not run steps that add rows; found {step.name!r}",
                hint="run this recipe with --engine local",
            )
        if isinstance(step, GlobalStep) and not isinstance(step, ExactDedupStep | NearDedupStep):
            raise ConfigError(
                f"the ray engine runs the global steps exact_dedup and near_dedup; found {step.name!r}",
                hint="run this recipe with --engine local",
            )
        if isinstance(step, NearDedupStep) and step.params.verification == "exact":  # type: ignore[attr-defined]
            raise ConfigError(
                "near_dedup verification 'exact' compares texts on one node; the ray engine verifies by signature",
                hint="use verification: signature (the default) with --engine ray, or run with --engine local",
            )


class _Silence(logging.Filter):
    """Drops log records whose message contains one of the given phrases."""

    def __init__(self, *phrases: str) -> None:
        super().__init__()
        self.phrases = phrases

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(phrase in message for phrase in self.phrases)


def _say(progress: Progress | None, label: str, done: int) -> None:
    if progress is not None:
        progress(label, done, 1)
