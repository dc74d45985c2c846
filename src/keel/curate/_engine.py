"""The local engine: runs a recipe over shards with a process pool, resumably and deterministically.

Stages split the recipe at each global step (dedup): every shard runs the per-record steps, then
the global step observes it; the parent decides once; the next stage applies the decision and goes
on. Each (stage, shard) writes its Parquet output and then a `.done.json` marker, so a crashed run
resumes where it stopped. Shards keep input order and names, so the same input and recipe give the
same output bytes. Work files are data only (Parquet, and `_workfiles`' JSON + numpy format, never pickle) and
each marker records the sha256 of what its shard wrote: resume re-computes a shard whose files changed. A run
holds its output folder's lock, and its workers die with it. Steps know nothing of this module.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.core.errors import InputError
from keel.core.ids import canonical_json, sha256_hex
from keel.curate._duplicate_ids import first_ids_only, quarantine_repeats_across_files
from keel.curate._problems import Problem
from keel.curate._process import block_pandas, die_with_parent, lock_output
from keel.curate._readers import read_records
from keel.curate._recipe import Recipe, ResolvedInput, build_steps
from keel.curate._step import GlobalStep, Step, StepStats
from keel.curate._workfiles import decode, encode, file_digest, read_verified, write_bytes
from keel.data._inputs import read_parquet_file
from keel.data._records import RECORD_SCHEMA, records_to_table
from keel.data._shards import SHARD_PARQUET

if TYPE_CHECKING:  # the process pool's module (~0.04 CPU-s) loads only when a run has workers
    from concurrent.futures import Future, ProcessPoolExecutor

__all__ = ["CurationReport", "LocalEngine", "Progress", "run_warnings"]

Progress = Callable[[str, int, int], None]
"""Called as (stage description, shards done, shards total) while a run advances."""

# Outputs are written as dataset shards are (zstd, 4,096-row groups, statistics of `id` only), so a commit
# stores each output file as a shard as it is instead of decoding and re-encoding it (`keel.data._shards`).
_PARQUET = SHARD_PARQUET
# Shards between stages are written once and read once: uncompressed, without dictionaries or statistics
# they cost 16 ms to write and 10 ms to read per 11 MB shard, against 48 and 18 with lz4 (which saved only
# 27% of the bytes on benchmarks/_corpus.py text), so work folders are ~1.4x larger than with lz4.
_WORK_PARQUET = {"compression": "none", "use_dictionary": False, "write_statistics": False, "row_group_size": 8192}
_WORK_FORMAT = 3  # part of the work folder's name: a run never resumes from shards an older layout wrote


@dataclass
class CurationReport:
    """What a run did: inputs read, each step's counters, global-step facts, outputs written."""

    output_dir: Path
    files: int = 0
    records_read: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    steps: dict[str, StepStats] = field(default_factory=dict)
    global_reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    records_out: int = 0
    bytes_out: int = 0
    shards: list[str] = field(default_factory=list)
    seconds: float = 0.0
    resumed_shards: int = 0
    recomputed_shards: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The content of `report.json`."""
        return {
            "output_dir": str(self.output_dir),
            "files": self.files,
            "records_read": self.records_read,
            "quarantined": dict(sorted(self.quarantined.items())),
            "steps": {name: stats.to_json() for name, stats in self.steps.items()},
            "global": self.global_reports,
            "records_out": self.records_out,
            "bytes_out": self.bytes_out,
            "shards": self.shards,
            "seconds": round(self.seconds, 3),
            "resumed_shards": self.resumed_shards,
            "recomputed_shards": self.recomputed_shards,
            "warnings": self.warnings,
        }


# The parameter to change when a step drops too much, by drop reason (quality reasons name their own threshold).
_SETTING_FOR_REASON = {
    "too_short": "min_chars",
    "too_long": "max_chars",
    "language_not_kept": "languages",
    "language_low_score": "min_score",
    "near_duplicate": "threshold",
    "exact_duplicate": "normalize",
    "blocked_words": "words / max_hits",
    "blocked_domain": "domains",
    "eval_contamination": "ngram / min_eval_words",
    "empty_after_normalize": "the inputs' text_field",
    "copies_parent": "threshold / ngram",
}


def run_warnings(report: CurationReport, steps: Sequence[Step], recipe: Recipe) -> list[str]:
    """What a user must look at after a run; each warning names the setting to change.

    A drop reason removing more than `recipe.warn_drop_share` of a step's input, or a step dropping everything.
    """
    positions = {step.name: i for i, step in reversed(list(enumerate(steps)))}
    warnings = []
    for name, stats in report.steps.items():
        where = f"steps[{positions.get(name, '?')}].{name}"
        if stats.records_in and not stats.records_out:
            reasons = ", ".join(f"{r}={n:,}" for r, n in stats.dropped.most_common())
            also = " (or set its `preset`)" if name == "quality" else ""
            warnings.append(
                f"{name} dropped every record it saw ({stats.records_in:,}; {reasons}), so the run wrote 0: "
                f"loosen {where}{also}"
            )
            continue
        for reason, count in stats.dropped.most_common():
            share = count / stats.records_in if stats.records_in else 0.0
            if share > recipe.warn_drop_share:
                setting = _SETTING_FOR_REASON.get(reason, reason if name == "quality" else "its parameters")
                hint = " (null switches the rule off), or choose `preset: documents`/`web`" if name == "quality" else ""
                warnings.append(
                    f"{name} rule {reason} dropped {share:.0%} of the records it saw ({count:,} of "
                    f"{stats.records_in:,}), above warn_drop_share {recipe.warn_drop_share:.0%}: check "
                    f"{where}.{setting}{hint}; "
                    "`keel curate explain ID` shows why a record went (keep_dropped: true)"
                )
    return warnings


def _write_parquet(table: pa.Table, path: Path, *, final: bool = True) -> str:
    """Write `table` atomically (a crash leaves no half-written shard under the real name); return its sha256."""
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, **(_PARQUET if final else _WORK_PARQUET))
    digest = file_digest(tmp)  # read back from the page cache: ~2 GB/s, a few ms per shard
    os.replace(tmp, path)
    return digest


def _pass_on(source: Path, path: Path, digest: str) -> str:
    """Give a work shard that a stage left unchanged its next name (atomically), without re-encoding it.

    A stage without per-record steps (a recipe starting with a global step) only observes its shards; writing
    each back cost ~0.02-0.05 CPU-s per 15 MB of text (encode and sha256) for the same rows. A hard link costs
    nothing; where links are refused, the bytes are copied. Either way the file holds `source`'s bytes, whose
    sha256 its marker recorded as `digest`.
    """
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    return digest


def _write_json(data: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


# --- work done in worker processes ---------------------------------------------------------------


def _file_shards(
    source: ResolvedInput, shard_size: int, strict: bool, problems: list[dict[str, Any]]
) -> Iterator[pa.Table]:
    """The records of one input file as record tables of `shard_size` rows (the last may be shorter), in file order.

    Bad items go to `problems` (or raise, with `strict`). Both engines cut files with this, so a shard holds
    the same records in each. The reader hands over runs of records as tables where it parsed them so
    (`read_records`), and one by one otherwise; a shard is the same table either way (one chunk per column).
    """
    parts: list[pa.Table] = []  # records read and not yet in a shard, in order: tables, then `loose`
    loose: list[dict[str, Any]] = []
    held = 0
    items = read_records(
        source.path,
        source.format,
        text_field=source.text_field,
        id_field=source.id_field,
        extractor=source.extractor,
        encoding=source.encoding,
    )
    for item in first_ids_only(items, source):
        if isinstance(item, Problem):
            if strict:
                raise item.strict_error()
            problems.append(item.to_json())
            continue
        if isinstance(item, dict):
            loose.append(item)
            held += 1
        else:
            if loose:
                parts, loose = [*parts, _shard_table(loose)], []
            parts.append(item)
            held += item.num_rows
        while held >= shard_size:
            if loose:
                parts, loose = [*parts, _shard_table(loose)], []
            joined = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            yield joined.slice(0, shard_size).combine_chunks()
            parts = [joined.slice(shard_size)] if joined.num_rows > shard_size else []
            held -= shard_size
    if loose:
        parts.append(_shard_table(loose))
    if held:
        yield (pa.concat_tables(parts) if len(parts) > 1 else parts[0]).combine_chunks()


def _read_task(source: ResolvedInput, index: int, shard_size: int, work: Path, strict: bool) -> dict[str, Any]:
    """Read one input file into shards `read/{index}-{j}.parquet` plus a quarantine file."""
    _tune_allocator()
    shards: list[str] = []
    digests: dict[str, str] = {}
    problems: list[dict[str, Any]] = []
    records = 0
    for shard in _file_shards(source, shard_size, strict, problems):
        name = f"{index:05d}-{len(shards):04d}"
        digests[name] = _write_parquet(shard, work / "read" / f"{name}.parquet", final=False)
        shards.append(name)
        records += shard.num_rows
    quarantine = "".join(json.dumps(p, sort_keys=True) + "\n" for p in problems).encode()
    digests["quarantine"] = write_bytes(quarantine, work / "read" / f"{index:05d}.quarantine.jsonl")
    done = {
        "shards": shards,
        "records": records,
        "problems": dict(Counter(p["reason"] for p in problems)),
        "digests": digests,
    }
    _write_json(done, work / "read" / f"{index:05d}.done.json")
    return done


def _shard_table(records: list[dict[str, Any]]) -> pa.Table:
    """`records_to_table(records)`, built a column at a time.

    Written by hand for speed: `pa.Table.from_pylist` walks every dict through the struct schema (0.34 CPU-s
    for the 14,717 records of benchmarks/curation_full_recipe.py); one list per column is 0.08 s, same table.
    """
    if not records:
        return records_to_table(records)
    source_type = RECORD_SCHEMA.field("source").type
    sources = [record["source"] for record in records]
    source = pa.StructArray.from_arrays(
        [pa.array([s[field.name] for s in sources], field.type) for field in source_type], fields=list(source_type)
    )
    columns = {
        "id": pa.array([r["id"] for r in records], RECORD_SCHEMA.field("id").type),
        "text": pa.array([r["text"] for r in records], RECORD_SCHEMA.field("text").type),
        "source": source,
        "meta": pa.array([r["meta"] for r in records], RECORD_SCHEMA.field("meta").type),
    }
    return pa.Table.from_arrays([columns[name] for name in RECORD_SCHEMA.names], schema=RECORD_SCHEMA)


def _start_worker(parent_pid: int) -> None:
    """Set up a pool worker: it dies with the run (`die_with_parent`) and, running only curation, loads no pandas."""
    die_with_parent(parent_pid)
    block_pandas()


@lru_cache(maxsize=1)
def _tune_allocator() -> bool:
    """Keep freed memory for reuse instead of returning it to the OS (glibc only; elsewhere a no-op).

    Steps work on whole batches with numpy: tens of arrays of 10-20 MB per batch. glibc serves each from
    fresh mmap'd pages and unmaps it when freed, so every batch pays page faults and zeroing again (~240k
    faults and ~2 s of system time on the 33 MB benchmark recipe). Serving them from the heap (mmap only
    above 32 MB) and trimming it only above 1 GB cut faults 3.6x and the recipe's CPU time by 10-27%
    (measured, benchmarks/curation_vs_datatrove.py), for ~70 MB more peak RSS. The engine owns its worker
    processes; with one worker this tunes the calling process, once.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


@lru_cache(maxsize=8)
def _steps_for(steps_json: str) -> list[Step]:
    """Build (once per worker process) the steps of a recipe, so models load once, not per shard."""
    return build_steps(json.loads(steps_json))


# Per-record steps run over slices of a shard holding about this much text, not over the whole shard: the
# quality step's numpy word arrays take ~20x the text they index (217 MB at once for a 2,000-document, 11 MB
# shard), so whole-shard batches made a stage's peak memory grow with the shard size. In 2 MB slices the
# working set is bounded (59 MB for the same shard) and CPU time is no worse (measured with
# benchmarks/curation_vs_datatrove.py, which reports peak RSS at two corpus sizes).
_SLICE_TEXT_BYTES = 2 << 20


def _slices(table: pa.Table) -> list[pa.Table]:
    """`table` cut into consecutive zero-copy slices of about `_SLICE_TEXT_BYTES` of text (at least one)."""
    budget = _SLICE_TEXT_BYTES
    if table.num_rows == 0:
        return [table]
    ends = np.cumsum(pc.fill_null(pc.binary_length(table.column("text")), 0).to_numpy())
    cuts = np.searchsorted(ends, np.arange(budget, int(ends[-1]), budget), side="right")
    bounds = sorted({0, table.num_rows, *(int(c) for c in cuts)})
    return [table.slice(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]


def _text_bytes(table: pa.Table) -> int:
    return pc.sum(pc.binary_length(table.column("text"))).as_py() or 0


def _run_step(
    step: Step, table: pa.Table, stats: StepStats, asides: list[pa.Table] | None, decision: Any = None
) -> pa.Table:
    """Apply one step to `table`, adding its counts to `stats` and (unless None) its dropped rows to `asides`."""
    stats.records_in += table.num_rows
    stats.bytes_in += _text_bytes(table)
    started = time.perf_counter()
    step.counters.clear()
    result = step.apply_decision(table, decision) if isinstance(step, GlobalStep) else step.apply(table)
    out, reasons = result.table, result.drop_reasons
    if reasons is not None:
        keep = pa.array([r is None for r in reasons], pa.bool_())
        stats.dropped.update(r for r in reasons if r is not None)
        if asides is not None and not all(r is None for r in reasons):
            aside = out.filter(pc.invert(keep))
            asides.append(aside.append_column("drop_reason", pa.array([r for r in reasons if r], pa.string())))
        out = out.filter(keep)
    stats.seconds += time.perf_counter() - started
    stats.counters.update(step.counters)
    stats.records_out += out.num_rows
    stats.bytes_out += _text_bytes(out)
    return out


def _concat(parts: list[pa.Table]) -> pa.Table:
    # Slices of one shard share a schema unless a step typed an all-null column by what it saw ("default"
    # promotion unifies null with the real type). Combined into one chunk per column, because Parquet's page
    # and dictionary boundaries follow the chunks: without it the bytes written would depend on the slicing.
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts, promote_options="default").combine_chunks()


def _run_stage_steps(
    steps: list[Step], positions: list[int], table: pa.Table, decision: Any, *, keep_dropped: bool
) -> tuple[pa.Table, dict[int, StepStats], dict[int, list[pa.Table] | None]]:
    """Run one stage on one shard: the global step's `decision` on the whole shard, then per-record steps by slice.

    Returns the output, each position's counters and (if kept) its dropped rows. Shared by the local and Ray
    engines, so both count and keep aside the same way.
    """
    stats = {position: StepStats() for position in positions}
    asides: dict[int, list[pa.Table] | None] = {p: [] if keep_dropped else None for p in positions}
    if positions and isinstance(steps[positions[0]], GlobalStep):  # only a stage's first step can be global
        table = _run_step(steps[positions[0]], table, stats[positions[0]], asides[positions[0]], decision)
        positions = positions[1:]
    if positions:
        parts = []
        for part in _slices(table):  # each slice through every step, so only one slice's intermediates live
            for position in positions:
                part = _run_step(steps[position], part, stats[position], asides[position])
            parts.append(part)
        table = _concat(parts)
    return table, stats, asides


def _write_asides(
    steps: list[Step], asides: dict[int, list[pa.Table] | None], dropped_dir: Path, shard: str, drop: Sequence[str] = ()
) -> None:
    """Write each step's dropped rows of one shard to `dropped_dir/<step>/<shard>.parquet`."""
    for position, kept_aside in asides.items():
        if kept_aside:
            (dropped_dir / steps[position].name).mkdir(parents=True, exist_ok=True)
            aside = _concat(kept_aside).drop_columns(list(drop))
            _write_parquet(aside, dropped_dir / steps[position].name / f"{shard}.parquet")


def _stage_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one stage on one shard: apply the previous global decision, the steps, then observe."""
    _tune_allocator()
    steps = _steps_for(spec["steps_json"])
    positions: list[int] = spec["positions"]
    decision = None
    if positions and isinstance(steps[positions[0]], GlobalStep):
        decision = decode(read_verified(Path(spec["decision"]), spec["decision_digest"]))
    dropped_dir = Path(spec["dropped_dir"]) if spec["dropped_dir"] else None
    table, stats, asides = _run_stage_steps(
        steps, positions, read_parquet_file(spec["input"]), decision, keep_dropped=dropped_dir is not None
    )
    if dropped_dir is not None:
        _write_asides(steps, asides, dropped_dir, spec["shard"])
    all_stats = {str(position): st.to_json() for position, st in stats.items()}
    digests: dict[str, str] = {}
    if spec["observe"] is not None:
        observer = steps[spec["observe"]]
        assert isinstance(observer, GlobalStep)
        started = time.perf_counter()
        observation = observer.observe(table)
        # Observing (e.g. computing MinHash signatures) is the global step's work: count its time there.
        all_stats[str(spec["observe"])] = StepStats(seconds=time.perf_counter() - started).to_json()
        digests["observation"] = write_bytes(encode(observation), Path(spec["observation"]))
    if spec["last"]:  # written as published, so publishing copies bytes instead of decoding and re-encoding
        digests["output"] = _write_parquet(_published(table), Path(spec["output"]))
    elif not positions and spec.get("input_digest"):  # nothing ran on the rows: the input is the output
        digests["output"] = _pass_on(Path(spec["input"]), Path(spec["output"]), spec["input_digest"])
    else:
        digests["output"] = _write_parquet(table, Path(spec["output"]), final=False)
    done = {"stats": all_stats, "rows": table.num_rows, "digests": digests}
    _write_json(done, Path(spec["done"]))
    return done


# --- the parent ----------------------------------------------------------------------------------

_SHARD_NAME = re.compile(r"\d{5}-\d{4}")


def _finished(marker: Path, files: dict[str, Path], report: CurationReport) -> dict[str, Any] | None:
    """A marker's content when it and every file it vouches for are intact; None (re-compute) otherwise.

    A marker without digests, or a file whose sha256 differs from the marker's, means someone or something
    changed the work folder after the shard finished: the shard is done again, not trusted, and the run says so.
    """
    if not marker.exists():
        return None
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
        digests = done["digests"]
        intact = all(path.exists() and file_digest(path) == digests[key] for key, path in files.items())
    except (ValueError, KeyError, TypeError, OSError):
        intact = False
    if not intact:
        report.recomputed_shards += 1
        warning = "work files changed since they were written were re-computed, not trusted (see recomputed_shards)"
        if warning not in report.warnings:
            report.warnings.append(warning)
        return None
    return done  # type: ignore[no-any-return]


def _finished_read(read_dir: Path, index: int, report: CurationReport) -> dict[str, Any] | None:
    """`_finished` for one input file's read: its shards (names checked, so none points elsewhere) and quarantine."""
    marker = read_dir / f"{index:05d}.done.json"
    try:
        shards = json.loads(marker.read_text(encoding="utf-8"))["shards"] if marker.exists() else []
        names_ok = all(_SHARD_NAME.fullmatch(s) and s.startswith(f"{index:05d}-") for s in shards)
    except (ValueError, KeyError, TypeError, OSError):
        shards, names_ok = [], False
    files = {s: read_dir / f"{s}.parquet" for s in shards} if names_ok else {"": read_dir / "-"}
    files["quarantine"] = read_dir / f"{index:05d}.quarantine.jsonl"
    return _finished(marker, files, report)


class LocalEngine:
    """Run recipes on this machine with a pool of worker processes.

    Args:
        workers: Worker processes; 1 runs everything in this process.

    Examples:
        >>> report = LocalEngine(workers=2).run(load_recipe("recipe.yaml"))  # doctest: +SKIP
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise InputError(f"expected at least 1 worker; got {workers}")
        self.workers = workers

    def run(self, recipe: Recipe, *, strict: bool = False, progress: Progress | None = None) -> CurationReport:
        """Run `recipe`, resuming from finished shards of an earlier identical run; write the outputs."""
        started = time.perf_counter()
        sources = recipe.resolve_inputs()
        steps = _steps_for(json.dumps(recipe.step_specs()))  # the same objects workers=1 then uses
        lock = lock_output(recipe.output_dir)  # before anything is written: one run per output folder
        try:
            work = recipe.output_dir / ".keel-work" / self._fingerprint(recipe, sources)
            for sub in ("read", "decisions"):
                (work / sub).mkdir(parents=True, exist_ok=True)
            report = CurationReport(output_dir=recipe.output_dir, files=len(sources))
            pool = self._pool()
            try:
                shards = self._read(pool, sources, recipe, work, strict, report, progress)
                final = self._stages(pool, steps, recipe, list(shards), work, report, progress, shards)
            finally:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
            self._publish(final, recipe, work, report)
            report.warnings += run_warnings(report, steps, recipe)
            report.seconds = time.perf_counter() - started
            _write_json(report.to_json(), recipe.output_dir / "report.json")
        finally:
            lock.release()
        return report

    @staticmethod
    def _fingerprint(recipe: Recipe, sources: Sequence[ResolvedInput]) -> str:
        files = [(str(s.path), s.path.stat().st_size, s.path.stat().st_mtime_ns) for s in sources]
        data = {"recipe": recipe.fingerprint_data(), "files": files, "work_format": _WORK_FORMAT}
        return sha256_hex(canonical_json(data))[:16]

    def _pool(self) -> ProcessPoolExecutor | None:
        if self.workers == 1:
            return None
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        # spawn, not fork: workers may load models and threads; forking those is unsafe.
        # Each worker ends when this process does, even on SIGKILL (`die_with_parent`).
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )

    def _map(self, pool: ProcessPoolExecutor | None, fn: Callable[..., Any], calls: list[tuple[Any, ...]],
             label: str, progress: Progress | None) -> list[Any]:  # fmt: skip
        results: list[Any] = [None] * len(calls)
        if progress:
            progress(label, 0, len(calls))
        if pool is None:
            for i, args in enumerate(calls):
                results[i] = fn(*args)
                if progress:
                    progress(label, i + 1, len(calls))
            return results
        from concurrent.futures import as_completed

        futures: dict[Future[Any], int] = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        done = 0
        for future in as_completed(futures):
            results[futures[future]] = future.result()  # re-raises a worker's error here
            done += 1
            if progress:
                progress(label, done, len(calls))
        return results

    def _read(self, pool: ProcessPoolExecutor | None, sources: Sequence[ResolvedInput], recipe: Recipe, work: Path,
              strict: bool, report: CurationReport, progress: Progress | None) -> dict[str, str]:  # fmt: skip
        """Read every input into shards; returns each shard's name and sha256, in input order."""
        results: list[dict[str, Any]] = [{}] * len(sources)
        todo = []
        for index, source in enumerate(sources):
            done = _finished_read(work / "read", index, report)
            if done is not None:
                results[index] = done
                report.resumed_shards += len(done["shards"])
            else:
                todo.append((index, (source, index, recipe.shard_size, work, strict)))
        fresh = self._map(pool, _read_task, [args for _, args in todo], "read", progress)
        for (index, _), result in zip(todo, fresh, strict=True):
            results[index] = result
        write_shard = lambda table, path: _write_parquet(table, path, final=False)  # noqa: E731
        quarantine_repeats_across_files(sources, results, work / "read", strict, write_shard, _write_json)
        shards = {}
        for result in results:
            shards.update({name: result["digests"][name] for name in result["shards"]})
            report.records_read += result["records"]
            report.quarantined.update(result["problems"])
        return shards

    def _stages(self, pool: ProcessPoolExecutor | None, steps: list[Step], recipe: Recipe, shards: list[str],
                work: Path, report: CurationReport, progress: Progress | None,
                input_digests: dict[str, str] | None = None) -> Path:  # fmt: skip
        for step in steps:
            report.steps[step.name] = StepStats()
        source_dir = work / "read"
        start, stage = 0, 0
        steps_json = json.dumps(recipe.step_specs())
        dropped = recipe.output_dir / "dropped" if recipe.keep_dropped else None
        decision_digests: dict[str, str] = {}
        while True:
            global_at = next(
                (i for i in range(start + (stage > 0), len(steps)) if isinstance(steps[i], GlobalStep)), None
            )
            end = global_at if global_at is not None else len(steps)
            positions = list(range(start, end))
            stage_dir = work / f"stage{stage}"
            stage_dir.mkdir(exist_ok=True)
            specs = [
                {
                    "steps_json": steps_json,
                    "input": str(source_dir / f"{shard}.parquet"),
                    "input_digest": (input_digests or {}).get(shard),
                    "output": str(stage_dir / f"{shard}.parquet"),
                    "done": str(stage_dir / f"{shard}.done.json"),
                    "shard": shard,
                    "positions": positions,
                    "decision": str(work / "decisions" / f"{start}-{shard}.bin"),
                    "decision_digest": decision_digests.get(shard),
                    "observe": global_at,
                    "observation": str(stage_dir / f"{shard}.observation.bin"),
                    "dropped_dir": str(dropped) if dropped else None,
                    "last": global_at is None,
                }
                for shard in shards
            ]
            label = f"stage {stage + 1}: {', '.join(steps[p].name for p in positions) or '—'}"
            results = self._run_stage(pool, specs, label, report, progress)
            for result in results:
                for position, data in result["stats"].items():
                    report.steps[steps[int(position)].name].merge(StepStats.from_json(data))
            if global_at is None:
                return stage_dir
            observed = [result["digests"]["observation"] for result in results]
            decision_digests = self._decide(steps[global_at], global_at, shards, observed, stage_dir, work, report)
            input_digests = {shard: result["digests"]["output"] for shard, result in zip(shards, results, strict=True)}
            source_dir, start, stage = stage_dir, global_at, stage + 1

    def _run_stage(self, pool: ProcessPoolExecutor | None, specs: list[dict[str, Any]], label: str,
                   report: CurationReport, progress: Progress | None) -> list[dict[str, Any]]:  # fmt: skip
        results: list[dict[str, Any]] = [{}] * len(specs)
        todo = []
        for i, spec in enumerate(specs):
            files = {"output": Path(spec["output"])}
            if spec["observe"] is not None:
                files["observation"] = Path(spec["observation"])
            done = _finished(Path(spec["done"]), files, report)
            if done is not None:
                results[i] = done
                report.resumed_shards += 1
            else:
                todo.append(i)
        fresh = self._map(pool, _stage_task, [(specs[i],) for i in todo], label, progress)
        for i, result in zip(todo, fresh, strict=True):
            results[i] = result
        return results

    @staticmethod
    def _decide(step: Step, position: int, shards: list[str], observed: list[str], stage_dir: Path, work: Path,
                report: CurationReport) -> dict[str, str]:  # fmt: skip
        """Decide once on every shard's observation (each checked against its marker's digest).

        Returns each shard's decision file digest, which the next stage's workers verify before reading it.
        """
        assert isinstance(step, GlobalStep)
        observations = [
            decode(read_verified(stage_dir / f"{shard}.observation.bin", digest))
            for shard, digest in zip(shards, observed, strict=True)
        ]
        decisions = step.decide(observations)
        if len(decisions) != len(shards):
            raise AssertionError(f"{step.name}.decide returned {len(decisions)} decisions for {len(shards)} shards")
        digests = {
            shard: write_bytes(encode(decision), work / "decisions" / f"{position}-{shard}.bin")
            for shard, decision in zip(shards, decisions, strict=True)
        }
        report.global_reports[step.name] = step.report(decisions)
        return digests

    @staticmethod
    def _publish(final: Path, recipe: Recipe, work: Path, report: CurationReport) -> None:
        data_dir = recipe.output_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        for stale in data_dir.glob("part-*.parquet"):
            stale.unlink()
        number = 0
        for shard_file in sorted(final.glob("*.parquet")):
            rows = pq.read_metadata(shard_file).num_rows
            if rows == 0:
                continue
            name = f"part-{number:05d}.parquet"
            tmp = (data_dir / name).with_suffix(".tmp")
            shutil.copyfile(shard_file, tmp)  # the last stage wrote it in the output format
            os.replace(tmp, data_dir / name)
            report.shards.append(name)
            report.records_out += rows
            report.bytes_out += (data_dir / name).stat().st_size
            number += 1
        with (recipe.output_dir / "quarantine.jsonl").open("w", encoding="utf-8") as out:
            for part in sorted((work / "read").glob("*.quarantine.jsonl")):
                out.write(part.read_text(encoding="utf-8"))


def _published(table: pa.Table) -> pa.Table:
    """`table` as published: required record columns first, in the schema a Parquet round trip gives it.

    A round trip names list items "element" (Arrow says "item"), so this keeps outputs the same bytes as when
    the last stage's shards were re-read to be published.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table.slice(0, 0), sink, **_WORK_PARQUET)
    table = table.cast(pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema_arrow)
    return table.cast(_output_schema(table))


def _output_schema(table: pa.Table) -> pa.Schema:
    # Required record columns first, in their declared types; step-added columns after, as they are. `id` is
    # typed as a commit types it (a plain nullable string: `keel.data._versions._prepare`), so an output file
    # holds exactly the schema of the version it is committed to and is stored as a shard as it is.
    extra = [f for f in table.schema if f.name not in RECORD_SCHEMA.names]
    return pa.schema([pa.field("id", pa.string()), *list(RECORD_SCHEMA)[1:], *extra])
