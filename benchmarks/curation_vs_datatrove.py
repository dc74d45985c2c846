"""MinHash near-duplicate removal on real text: Keel through its CLI and as a library, against datatrove.

The corpus is Python's HTML documentation as Debian's python3-doc installs it, with near copies at known
word-5-gram Jaccard 0.33-1.0 (`real_text_corpus.py`: ~14,700 documents, ~15 MB, 87% with non-ASCII text),
written as JSONL shards. On the same files, with the same n-gram size, bands x rows and worker count:

- datatrove's signatures -> buckets -> cluster -> filter, in its own virtual environment (created on first
  use in benchmarks/.venv-datatrove);
- `keel curate run` in a fresh workspace with a one-step recipe (near_dedup at the threshold), committing the
  output as a dataset version, as users run it; and once more with --no-commit, for the commit's share;
- Keel's library path: signatures and sketches per shard in workers, the index, the kept lines written back.

    python benchmarks/curation_vs_datatrove.py [--limit N] [--workers 1] [--tools datatrove,cli,library]
    python benchmarks/curation_vs_datatrove.py --alternate 3 --tools none   # datatrove and the CLI in turn

Prints the S-curve to stderr and one JSON line to stdout: per tool MB per CPU-second (own process plus worker
processes; the machine is shared, so CPU time is the fair number), wall time, peak RSS (the largest process),
precision (removed documents that are copies: planted, or natural ones with Jaccard >= 0.5 to an earlier
document), recall of copies with true Jaccard >= --threshold (0.8), recall per Jaccard bin below it, and for
Keel the drops' true Jaccard to the record kept for them; then keel/datatrove ratios. Targets: the CLI path
>= 20x datatrove per CPU-second, precision >= 0.99 and recall >= 0.99. With --full-recipe, also the full
default recipe (normalize, language, quality, exact and near dedup, pii) through the CLI on the same corpus;
with --recipe-sizes 2000,6000 (source documents), the full recipe's library path in a fresh process per size:
MB per CPU-second, peak RSS, and how the peak and the traced dedup index grow per document (--tools none for
this part alone).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from keel.curate._minhash import MinHashParams, NearDuplicateIndex, Sketches, minhash_sketches
from real_text_corpus import Truth, build_corpus, jaccard, load_truth, summary

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-datatrove"
PYCACHE = HERE / ".pycache-bench"
# datatrove's MinHash imports pull in spacy (its English word tokenizer), regex and tokenizers; JsonlReader needs
# orjson; its default xxhash hashing passes str, which xxhash 4 rejects ("Strings must be encoded"), so pin 3.x.
DATATROVE_PACKAGES = ["datatrove", "spacy", "regex", "tokenizers", "xxhash<4", "orjson"]
TARGET_SPEEDUP, TARGET_PRECISION, TARGET_RECALL = 20.0, 0.99, 0.99

DATATROVE_DRIVER = r"""
import json, resource, sys, time
from pathlib import Path
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

args = json.loads(sys.argv[1])
src, work, workers, tasks = args["input"], Path(args["work"]), args["workers"], args["tasks"]
config = MinhashConfig(n_grams=args["ngram"], num_buckets=args["bands"], hashes_per_bucket=args["rows"],
                       seed=args["seed"], hash_config=HashConfig(precision=64))

def reader():
    return JsonlReader(src, glob_pattern="*.jsonl", id_key="id", text_key="text")

stages = [
    dict(pipeline=[reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)], tasks=tasks),
    dict(pipeline=[MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"),
                                       config=config)], tasks=config.num_buckets),
    dict(pipeline=[MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"),
                                       config=config)], tasks=1),
    dict(pipeline=[reader(), MinhashDedupFilter(input_folder=str(work / "remove"), exclusion_writer=JsonlWriter(
        str(work / "removed"), compression=None)), JsonlWriter(str(work / "output"), compression=None)], tasks=tasks),
]
wall0, cpu0 = time.perf_counter(), time.process_time()
child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
for i, stage in enumerate(stages):
    # fork, not the default forkserver: forkserver's workers are not our children, so their CPU time would be lost
    LocalPipelineExecutor(**stage, workers=workers, logging_dir=str(work / f"logs{i}"), start_method="fork").run()
child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = time.process_time() - cpu0 + (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
removed = [json.loads(line)["id"] for f in sorted((work / "removed").glob("*")) for line in f.open()]
peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, child1.ru_maxrss)
print(json.dumps({"wall": time.perf_counter() - wall0, "cpu": cpu, "removed": removed, "peak_rss_mb": peak_kb / 1024}))
"""


def ensure_datatrove_venv() -> Path:
    """The datatrove venv's python, creating the venv and installing datatrove into it if missing."""
    python = VENV / "bin" / "python"
    probe = "import datatrove.pipeline.dedup.minhash, spacy, orjson, xxhash; xxhash.xxh64_intdigest('probe')"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV} and installing {' '.join(DATATROVE_PACKAGES)} ...", file=sys.stderr)
    subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *DATATROVE_PACKAGES], check=True)
    subprocess.run([python, "-c", probe], check=True)
    return python


def run_datatrove(input_dir: Path, work: Path, params: MinHashParams, workers: int, tasks: int) -> dict[str, Any]:
    python = ensure_datatrove_venv()
    args = {"input": str(input_dir), "work": str(work), "workers": workers, "tasks": tasks, "ngram": params.ngram,
            "bands": params.bands, "rows": params.rows, "seed": params.seed}  # fmt: skip
    log = work / "datatrove.log"
    work.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        done = subprocess.run([python, "-c", DATATROVE_DRIVER, json.dumps(args)], stdout=subprocess.PIPE, stderr=err,
                              text=True, env={**os.environ, "PYTHONPATH": ""})  # fmt: skip
    if done.returncode != 0:
        sys.exit(
            f"datatrove failed (exit {done.returncode}); last log lines:\n" + "".join(log.open().readlines()[-30:])
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _keel_shard(path: Path, params: MinHashParams) -> tuple[list[str], np.ndarray, Sketches]:
    ids, texts = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            ids.append(record["id"])
            texts.append(record["text"])
    signatures, sketches = minhash_sketches(texts, params)
    return ids, signatures, sketches


def keel_dedup(paths: list[Path], out_dir: Path, params: MinHashParams, workers: int) -> NearDuplicateIndex:
    """Keel's library path: read shards and compute signatures and sketches (in workers), the index, write kept lines.

    The same verification as `near_dedup`'s default (`verification: signature` with sketches).
    """
    if workers == 1:
        shards = [_keel_shard(p, params) for p in paths]
    else:
        # fork (explicit: 3.14 defaults to forkserver) keeps workers our children, so RUSAGE_CHILDREN counts them
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            shards = list(pool.map(_keel_shard, paths, repeat(params)))
    index = NearDuplicateIndex(params)
    for ids, sigs, sketches in shards:
        index.add(ids, sigs, sketches=sketches)
    drop = index.duplicates()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        with path.open(encoding="utf-8") as src, (out_dir / path.name).open("w", encoding="utf-8") as dst:
            dst.writelines(line for line in src if json.loads(line)["id"] not in drop)
    return index


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """`fn()`, its wall seconds, and CPU seconds of this process plus reaped child processes (and theirs)."""
    wall0, cpu0, child0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    value = fn()
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    return value, time.perf_counter() - wall0, time.process_time() - cpu0 + children


BINS = ((0.33, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8))


def quality(removed: set[str], truth: Truth, threshold: float) -> dict[str, Any]:
    """Precision, recall at >= threshold, and the share of copies removed per Jaccard bin below it."""
    copies = set(truth.copies) | set(truth.natural)
    near = truth.near(threshold)
    both = {**truth.natural, **truth.copies}
    per_bin = {}
    for lo, hi in BINS:
        members = {doc for doc, (_, j) in both.items() if lo <= j < hi or (lo == BINS[0][0] and j < lo)}
        per_bin[f"{lo:.2f}-{hi:.2f}"] = round(len(removed & members) / len(members), 4) if members else None
    return {
        "removed": len(removed),
        "precision": round(len(removed & copies) / len(removed), 4) if removed else 1.0,
        "recall": round(len(removed & near) / len(near), 4) if near else 1.0,
        "removed_non_copies": len(removed - copies),
        "recall_by_jaccard_below_threshold": per_bin,
    }


def to_kept(kept_of: dict[str, str], truth: Truth, threshold: float) -> dict[str, Any]:
    """The true Jaccard of each dropped record to the record kept for it: share >= threshold, >= t - 0.05, min."""
    values = np.array([jaccard(truth.texts[d], truth.texts[k]) for d, k in kept_of.items() if d != k] or [1.0])
    return {
        "dropped_jaccard_to_kept_ge_threshold": round(float(np.mean(values >= threshold)), 4),
        "dropped_jaccard_to_kept_ge_threshold_minus_0_05": round(float(np.mean(values >= threshold - 0.05)), 4),
        "dropped_jaccard_to_kept_min": round(float(values.min()), 4),
    }


def speed(mb: float, wall: float, cpu: float) -> dict[str, float]:
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "mb_per_s": round(mb / wall, 3),
            "mb_per_cpu_s": round(mb / cpu, 3)}  # fmt: skip


def run_library(truth: Truth, paths: list[Path], work: Path, params: MinHashParams, args: argparse.Namespace) -> dict:
    """The library path, repeated for --keel-seconds (median), in this process (peak RSS from a fresh child)."""
    mb = truth.nbytes / 1e6
    runs, started = [], time.perf_counter()
    while len(runs) < 3 or (time.perf_counter() - started < args.keel_seconds and len(runs) < 50):
        runs.append(measured(lambda: keel_dedup(paths, work / "keel-out", params, args.workers)))
    index = runs[0][0]
    wall, cpu = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
    report = index.report(examples=3)
    child = [sys.executable, __file__, "--library-child", str(work / "input"), "--workers", str(args.workers),
             "--threshold", str(args.threshold)]  # fmt: skip
    peak = run_measured(child, env=_env())[3]
    return {
        **speed(mb, wall, cpu),
        "repeats": len(runs),
        "peak_rss_mb": round(peak, 1),
        **quality(index.duplicates(), truth, args.threshold),
        **to_kept(index.clusters(), truth, args.threshold),
        "report": {k: report[k] for k in ("clusters", "candidate_pairs", "verified_pairs", "dropped_to_kept")},
    }


def _library_child(input_dir: Path, workers: int, threshold: float) -> None:
    """One library-path run in a fresh process, for its peak RSS."""
    with tempfile.TemporaryDirectory(prefix="keel-bench-lib-") as tmp:
        keel_dedup(sorted(input_dir.glob("*.jsonl")), Path(tmp), MinHashParams(threshold=threshold), workers)


def _env() -> dict[str, str]:
    """This environment with this tree's src first on PYTHONPATH (and the benchmarks folder, for the child).

    Bytecode is cached under benchmarks/.pycache-bench even where PYTHONDONTWRITEBYTECODE is set: an installed
    keel has its .pyc files, and compiling its ~140 modules on every start cost ~0.6 CPU-s per command.
    """
    path = [str(HERE.parent / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in path if p), "PYTHONPYCACHEPREFIX": str(PYCACHE)}


# Runs a command and prints, as its last stderr line, the CPU seconds and peak RSS of that command and everything
# it started: a child's rusage includes its reaped children, and RUSAGE_CHILDREN's ru_maxrss is the largest one.
_RUSAGE_WRAPPER = (
    "import json, resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(json.dumps({'cpu': u.ru_utime + u.ru_stime, 'peak_kb': u.ru_maxrss}), file=sys.stderr); "
    "sys.exit(done.returncode)"
)


def run_measured(command: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float, float, float]:
    """`command` run to completion: the finished process, wall and CPU seconds, and peak RSS in MB (its own)."""
    wall0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RUSAGE_WRAPPER, *command], capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - wall0
    usage = json.loads(done.stderr.strip().splitlines()[-1])
    return done, wall, usage["cpu"], usage["peak_kb"] / 1024


NEAR_RECIPE = "  - near_dedup: {{threshold: {threshold}}}\n"
FULL_RECIPE = (
    "  - normalize: {{}}\n  - language: {{}}\n  - quality: {{}}\n  - exact_dedup: {{}}\n"
    "  - near_dedup: {{threshold: {threshold}}}\n  - pii: {{}}\n"
)
RECIPE_TARGET_MB_PER_CPU_S = 5.0


def _keel_cli() -> list[str]:
    """The `keel` command of this interpreter's environment (with this tree's src first on PYTHONPATH)."""
    script = Path(sys.executable).with_name("keel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keel"]


def cli_run(
    input_dir: Path, work: Path, steps: str, workers: int, commit: bool
) -> tuple[dict[str, Any], float, float, float]:
    """`keel curate run` on `input_dir` in a fresh workspace: the --json report, wall and CPU seconds, peak RSS."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = _env()
    subprocess.run([*_keel_cli(), "init", str(work)], check=True, capture_output=True, env=env)
    recipe = work / "near.yaml"
    recipe.write_text(
        f"inputs:\n  - path: {input_dir}/*.jsonl\n    id_field: id\noutput: out\nshard_size: 5000\nsteps:\n{steps}"
    )
    command = [*_keel_cli(), "curate", "run", str(recipe), "--json", "--workers", str(workers)]
    command += [] if commit else ["--no-commit"]
    done, wall, cpu, peak = run_measured(command, cwd=work, env=env)
    if done.returncode != 0:
        sys.exit(f"keel curate run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report, wall, cpu, peak


def _kept_ids(work: Path) -> set[str]:
    import pyarrow.parquet as pq

    return {
        i for p in sorted((work / "out" / "data").glob("*.parquet")) for i in pq.read_table(p).column("id").to_pylist()
    }


def run_cli(truth: Truth, work: Path, params: MinHashParams, args: argparse.Namespace) -> dict[str, Any]:
    """`keel curate run` with commit (median of --cli-repeats), without commit (the commit's share), and quality."""
    mb = truth.nbytes / 1e6
    steps = NEAR_RECIPE.format(threshold=params.threshold)
    with_commit, without = [], []
    cli_run(work / "input", work / "cli", steps, args.workers, commit=False)  # warm-up: bytecode, page cache
    for _ in range(args.cli_repeats):
        report, wall, cpu, peak = cli_run(work / "input", work / "cli", steps, args.workers, commit=True)
        with_commit.append((wall, cpu, peak))
        without.append(cli_run(work / "input", work / "cli-nocommit", steps, args.workers, commit=False)[2])
    removed = set(truth.order) - _kept_ids(work / "cli")
    startup = statistics.median(run_measured([*_keel_cli(), "--help"], env=_env())[2] for _ in range(3))
    wall, cpu = statistics.median(r[0] for r in with_commit), statistics.median(r[1] for r in with_commit)
    cpu_nocommit = statistics.median(without)
    near = report["global"]["near_dedup"]
    return {
        **speed(mb, wall, cpu),
        "repeats": args.cli_repeats,
        "peak_rss_mb": round(max(r[2] for r in with_commit), 1),
        "no_commit_mb_per_cpu_s": round(mb / cpu_nocommit, 3),
        "commit_share_of_cpu": round(max(0.0, cpu - cpu_nocommit) / cpu, 3),
        "startup_cpu_s": round(startup, 3),  # `keel --help`: the imports every command pays before its work
        "startup_share_of_cpu": round(startup / cpu, 3),
        **quality(removed, truth, args.threshold),
        "report": {k: near[k] for k in ("clusters", "candidate_pairs", "verified_pairs", "dropped_to_kept")},
    }


def run_alternating(truth: Truth, work: Path, params: MinHashParams, args: argparse.Namespace) -> dict[str, Any]:
    """--alternate N: datatrove then `keel curate run` (with commit), N rounds in turn; per round CPU-s and ratio.

    The machine is shared: a tool measured minutes after the other may meet another load, so each round pairs the
    two back to back and reports its own ratio (MB per CPU-second, Keel over datatrove) and load average.
    """
    mb = truth.nbytes / 1e6
    steps = NEAR_RECIPE.format(threshold=params.threshold)
    cli_run(work / "input", work / "cli", steps, args.workers, commit=False)  # warm-up: bytecode, page cache
    rounds = []
    for i in range(args.alternate):
        dt = run_datatrove(work / "input", work / f"datatrove-{i}", params, args.workers, max(args.workers, 1))
        report, wall, cpu, peak = cli_run(work / "input", work / "cli", steps, args.workers, commit=True)
        rounds.append({"datatrove_cpu_s": round(dt["cpu"], 2), "keel_cli_cpu_s": round(cpu, 3),
                       "ratio": round(dt["cpu"] / cpu, 1), "load_avg_1m": round(os.getloadavg()[0], 2)})  # fmt: skip
        print(f"round {i + 1}: {rounds[-1]}", file=sys.stderr)
    removed = set(truth.order) - _kept_ids(work / "cli")
    keel_cpu = statistics.median(r["keel_cli_cpu_s"] for r in rounds)
    dt_cpu = statistics.median(r["datatrove_cpu_s"] for r in rounds)
    return {
        "rounds": rounds,
        "keel_cli_cpu_s_median": keel_cpu,
        "datatrove_cpu_s_median": dt_cpu,
        "keel_cli_mb_per_cpu_s": round(mb / keel_cpu, 3),
        "datatrove_mb_per_cpu_s": round(mb / dt_cpu, 3),
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "ratio_min": min(r["ratio"] for r in rounds),
        "keel_cli_quality": quality(removed, truth, args.threshold),
        "datatrove_quality": quality(set(dt["removed"]), truth, args.threshold),
    }


def run_full_recipe(truth: Truth, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The full default recipe through `keel curate run` (with commit): MB per CPU-second and peak RSS."""
    mb = truth.nbytes / 1e6
    report, wall, cpu, peak = cli_run(work / "input", work / "full", FULL_RECIPE.format(threshold=args.threshold),
                                      args.workers, commit=True)  # fmt: skip
    steps = {name: {"s": st["seconds"], "out": st["records_out"]} for name, st in report["steps"].items()}
    return {
        **speed(mb, wall, cpu),
        "peak_rss_mb": round(peak, 1),
        "records_out": report["records_out"],
        "step_seconds": steps,
        "meets_target": mb / cpu >= RECIPE_TARGET_MB_PER_CPU_S,
    }


def write_shards(corpus: Path, directory: Path, shards: int) -> list[Path]:
    """The corpus's lines as `shards` JSONL files of consecutive documents (`{"id", "text"}` only)."""
    lines = corpus.read_text(encoding="utf-8").splitlines()
    directory.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(lines), shards + 1).astype(int)
    paths = []
    for s in range(shards):
        path = directory / f"shard-{s:05d}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for line in lines[bounds[s] : bounds[s + 1]]:
                record = json.loads(line)
                f.write(json.dumps({"id": record["id"], "text": record["text"]}, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def _recipe_child(directory: Path, workers: int) -> None:
    """Run the full default recipe (library path) on the corpus in `directory`; print CPU, wall and peak RSS."""
    from keel.curate import LocalEngine, load_recipe

    recipe = directory / "recipe.yaml"
    steps = FULL_RECIPE.format(threshold=0.8)
    recipe.write_text(
        f"inputs:\n  - path: input/*.jsonl\n    id_field: id\noutput: out\nshard_size: 2000\nsteps:\n{steps}"
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report = LocalEngine(workers=workers).run(load_recipe(recipe))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + children.ru_utime + children.ru_stime
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss)
    steps_out = {name: {"s": round(st.seconds, 2), "out": st.records_out} for name, st in report.steps.items()}
    print(json.dumps({"cpu": cpu, "wall": time.perf_counter() - wall0, "peak_rss_mb": peak_kb / 1024,
                      "records_out": report.records_out, "steps": steps_out,
                      "dedup_index_mb": _dedup_index_mb(recipe)}))  # fmt: skip


def _dedup_index_mb(recipe_path: Path) -> float:
    """Peak traced memory of the larger dedup decision: every shard's observations loaded, then decided.

    This is what the parent must hold for the whole corpus at once (the dedup index); everything else the
    engine holds is per shard or per slice. Re-run here on the run's own observation files, under tracemalloc.
    """
    import tracemalloc

    from keel.curate import load_recipe
    from keel.curate._recipe import build_steps
    from keel.curate._step import GlobalStep
    from keel.curate._workfiles import decode

    recipe = load_recipe(recipe_path)
    work = next((recipe.output_dir / ".keel-work").iterdir())
    peak = 0
    dedup = [step for step in build_steps(recipe.step_specs()) if isinstance(step, GlobalStep)]
    for stage, step in enumerate(dedup):  # stage N's shards hold the observations for the Nth global step
        tracemalloc.start()
        step.decide([decode(p.read_bytes()) for p in sorted((work / f"stage{stage}").glob("*.observation.bin"))])
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return peak / 1e6


def run_recipe(limit: int, args: argparse.Namespace) -> dict[str, Any]:
    """The full default recipe (library path) on the corpus cut to `limit` sources, in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="keel-bench-recipe-") as tmp:
        corpus = build_corpus(Path(tmp) / "corpus", seed=args.seed, limit=limit)
        truth = load_truth(corpus)
        write_shards(corpus, Path(tmp) / "input", max(1, len(truth.order) // 2000))
        done, _, _, _ = run_measured(
            [sys.executable, __file__, "--recipe-child", tmp, "--workers", str(args.workers)], env=_env()
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    mb = truth.nbytes / 1e6
    return {
        "docs": len(truth.order), "mb": round(mb, 2), "mb_per_cpu_s": round(mb / result["cpu"], 2),
        "mb_per_s": round(mb / result["wall"], 2), "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "dedup_index_mb": round(result["dedup_index_mb"], 2),
        "records_out": result["records_out"], "step_seconds": result["steps"],
    }  # fmt: skip


def _recipe_sizes(out: dict[str, Any], args: argparse.Namespace) -> None:
    """The full recipe's library path at --recipe-sizes, and how peak RSS and the dedup index grow per document."""
    sizes = [int(n) for n in args.recipe_sizes.split(",") if n]
    if sizes:
        out["full_recipe_library"] = [run_recipe(n, args) for n in sizes]
        if len(sizes) > 1:
            small, large = out["full_recipe_library"][0], out["full_recipe_library"][-1]
            docs = large["docs"] - small["docs"]
            out["peak_rss_growth_bytes_per_doc"] = round((large["peak_rss_mb"] - small["peak_rss_mb"]) * 1e6 / docs)
            out["dedup_index_bytes_per_doc"] = round((large["dedup_index_mb"] - small["dedup_index_mb"]) * 1e6 / docs)


def _ratios(out: dict[str, Any]) -> None:
    """Keel's speed over datatrove's per CPU-second, and whether the CLI path meets the targets."""
    for name in ("keel_cli", "keel_library"):
        if "datatrove" in out and name in out:
            out[f"{name}_speedup_cpu"] = round(out[name]["mb_per_cpu_s"] / out["datatrove"]["mb_per_cpu_s"], 1)
    if "keel_cli_speedup_cpu" in out:
        out["meets_targets"] = bool(
            out["keel_cli_speedup_cpu"] >= TARGET_SPEEDUP
            and out["keel_cli"]["precision"] >= TARGET_PRECISION
            and out["keel_cli"]["recall"] >= TARGET_RECALL
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="source documents (default: all, ~11,300)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--tools", default="datatrove,cli,library")
    parser.add_argument("--keel-seconds", type=float, default=10.0, help="repeat the library path this long (median)")
    parser.add_argument("--cli-repeats", type=int, default=3)
    parser.add_argument(
        "--alternate", type=int, default=0, help="N rounds of datatrove then the CLI, back to back (per-round ratios)"
    )
    parser.add_argument("--full-recipe", action="store_true", help="also the full default recipe through the CLI")
    parser.add_argument(
        "--recipe-sizes", default="", help="source-document counts for the full recipe, library path, e.g. 2000,6000"
    )
    parser.add_argument("--library-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--recipe-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library_child is not None:
        _library_child(args.library_child, args.workers, args.threshold)
        return
    if args.recipe_child is not None:
        _recipe_child(args.recipe_child, args.workers)
        return
    tools = set(args.tools.split(","))
    params = MinHashParams(ngram=5, threshold=args.threshold)
    print(f"S-curve, {params.bands} bands x {params.rows} rows (P(candidate) by Jaccard):", file=sys.stderr)
    for s, p in params.s_curve(11):
        print(f"  {s:.1f}  {p:.4f}  {'#' * round(p * 40)}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="keel-bench-dedup-") as tmp:
        work = Path(tmp)
        gen0 = time.perf_counter()
        corpus = build_corpus(work / "corpus", seed=args.seed, limit=args.limit)
        truth = load_truth(corpus)
        facts = summary(corpus)
        mb = truth.nbytes / 1e6
        out: dict[str, Any] = {
            "benchmark": "curation_vs_datatrove", "corpus": "python3-doc HTML (benchmarks/real_text_corpus.py)",
            "docs": facts["documents"], "mb": round(mb, 2), "non_ascii_share": facts["non_ascii_share"],
            "copies": facts["copies"], "natural_near_copies": facts["natural_near_copies"],
            "copies_at_threshold": len(truth.near(args.threshold)), "workers": args.workers,
            "corpus_s": round(time.perf_counter() - gen0, 1), "ngram": params.ngram, "bands": params.bands,
            "rows": params.rows, "num_perm": params.num_perm, "threshold": params.threshold,
            "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        }  # fmt: skip
        shards = max(args.workers, 1)
        paths = write_shards(corpus, work / "input", shards)
        if args.alternate:
            out["alternating"] = run_alternating(truth, work, params, args)
        if "datatrove" in tools:
            dt = run_datatrove(work / "input", work / "datatrove", params, args.workers, shards)
            out["datatrove"] = {
                **speed(mb, dt["wall"], dt["cpu"]),
                "peak_rss_mb": round(dt["peak_rss_mb"], 1),
                **quality(set(dt["removed"]), truth, args.threshold),
            }
        if "cli" in tools:
            out["keel_cli"] = run_cli(truth, work, params, args)
        if "library" in tools:
            out["keel_library"] = run_library(truth, paths, work, params, args)
        if args.full_recipe:
            out["full_recipe"] = run_full_recipe(truth, work, args)
    _recipe_sizes(out, args)
    _ratios(out)
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
