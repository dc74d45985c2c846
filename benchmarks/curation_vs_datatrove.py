"""MinHash near-duplicate removal: Keel against datatrove's four-stage MinHash dedup, same corpus, same run.

Builds a synthetic corpus with known copies (`_corpus.py`), writes it as JSONL shards, runs datatrove's
signatures -> buckets -> cluster -> filter in its own virtual environment (created on first use in
benchmarks/.venv-datatrove), then Keel's signatures -> LSH -> clusters -> filter on the same files with
the same n-gram size, bands x rows and worker count. Both read the JSONL and write the kept documents.

    python benchmarks/curation_vs_datatrove.py [--docs 1500] [--workers 1] [--tools datatrove,keel]

Prints the S-curve to stderr and one JSON line to stdout: per tool docs/s, MB/s (wall), MB per CPU-second
(own process plus worker processes; the machine is shared, so CPU time is the fair number), precision
(removed documents that are copies) and recall (copies with true 5-gram Jaccard >= --threshold, 0.8, removed),
and the keel/datatrove speed ratio. Targets: >= 20x datatrove per CPU-second, precision >= 0.99, recall >= 0.98.

Then the full default recipe (normalize, language, quality, exact and near dedup, pii) in a fresh process per
corpus size (--recipe-sizes, shards of 2,000 documents): MB per CPU-second (target >= 5) and peak RSS, and how
much the peak grows per extra document against the per-document size of the dedup index, which must be all
it grows by.
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

from _corpus import Corpus, jaccard, make_corpus
from keel.curate._minhash import MinHashParams, NearDuplicateIndex, minhash_signatures

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-datatrove"
# datatrove's MinHash imports pull in spacy (its English word tokenizer), regex and tokenizers; JsonlReader needs
# orjson; its default xxhash hashing passes str, which xxhash 4 rejects ("Strings must be encoded"), so pin 3.x.
DATATROVE_PACKAGES = ["datatrove", "spacy", "regex", "tokenizers", "xxhash<4", "orjson"]
TARGET_SPEEDUP, TARGET_PRECISION, TARGET_RECALL = 20.0, 0.99, 0.98

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
print(json.dumps({"wall": time.perf_counter() - wall0, "cpu": cpu, "removed": removed}))
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


def _keel_shard(path: Path, params: MinHashParams, with_texts: bool) -> tuple[list[str], np.ndarray, list[str] | None]:
    ids, texts = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            ids.append(record["id"])
            texts.append(record["text"])
    return ids, minhash_signatures(texts, params), texts if with_texts else None


def keel_dedup(
    paths: list[Path], out_dir: Path, params: MinHashParams, workers: int, exact: bool
) -> NearDuplicateIndex:
    """Keel end to end: read shards and compute signatures (in workers), LSH + clusters, write kept lines."""
    if workers == 1:
        shards = [_keel_shard(p, params, exact) for p in paths]
    else:
        # fork (explicit: 3.14 defaults to forkserver) keeps workers our children, so RUSAGE_CHILDREN counts them
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            shards = list(pool.map(_keel_shard, paths, repeat(params), repeat(exact)))
    index = NearDuplicateIndex(params)
    for ids, sigs, texts in shards:
        index.add(ids, sigs, texts)
    drop = index.duplicates()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        with path.open(encoding="utf-8") as src, (out_dir / path.name).open("w", encoding="utf-8") as dst:
            dst.writelines(line for line in src if json.loads(line)["id"] not in drop)
    return index


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """`fn()`, its wall seconds, and CPU seconds of this process plus reaped worker processes."""
    wall0, cpu0, child0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    value = fn()
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    return value, time.perf_counter() - wall0, time.process_time() - cpu0 + children


def quality(removed: set[str], corpus: Corpus, threshold: float) -> dict[str, Any]:
    copies = set(corpus.truth)
    near = {k for k, (_, j) in corpus.truth.items() if j >= threshold}
    return {
        "removed": len(removed),
        "precision": round(len(removed & copies) / len(removed), 4) if removed else 1.0,
        "recall": round(len(removed & near) / len(near), 4) if near else 1.0,
        "recall_all_copies": round(len(removed & copies) / len(copies), 4) if copies else 1.0,
        "removed_non_copies": len(removed - copies),
        "removed_quoting_docs": len(removed & set(corpus.related)),
    }


def speed(n_docs: int, mb: float, wall: float, cpu: float) -> dict[str, float]:
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "docs_per_s": round(n_docs / wall, 1),
            "mb_per_s": round(mb / wall, 3), "mb_per_cpu_s": round(mb / cpu, 3)}  # fmt: skip


def run_keel(corpus: Corpus, paths: list[Path], work: Path, params: MinHashParams, args: argparse.Namespace) -> dict:
    mb = corpus.nbytes / 1e6
    runs, started = [], time.perf_counter()
    while len(runs) < 3 or (time.perf_counter() - started < args.keel_seconds and len(runs) < 50):
        runs.append(measured(lambda: keel_dedup(paths, work / "keel-out", params, args.workers, args.keel_exact)))
    index = runs[0][0]
    wall, cpu = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
    removed = index.duplicates()
    texts, kept_of = dict(corpus.docs), index.clusters()
    to_kept = [jaccard(texts[d], texts[kept_of[d]]) for d in removed] or [1.0]
    report = index.report(examples=3)
    return {
        **speed(len(corpus.docs), mb, wall, cpu),
        "repeats": len(runs),
        **quality(removed, corpus, args.threshold),
        "removed_with_jaccard_to_kept_ge_threshold": round(float(np.mean(np.array(to_kept) >= args.threshold)), 4),
        "min_jaccard_to_kept": round(min(to_kept), 4),
        "report": {k: report[k] for k in ("clusters", "candidate_pairs", "verified_pairs", "verification", "examples")},
    }


DEFAULT_RECIPE_STEPS = (
    "  - normalize: {}\n  - language: {}\n  - quality: {}\n  - exact_dedup: {}\n"
    "  - near_dedup: {threshold: 0.8}\n  - pii: {}\n"
)
RECIPE_TARGET_MB_PER_CPU_S = 5.0


def _recipe_child(directory: Path, workers: int) -> None:
    """Run the full default recipe on the corpus in `directory` and print CPU, wall and peak RSS."""
    import resource

    from keel.curate import LocalEngine, load_recipe

    recipe = directory / "recipe.yaml"
    recipe.write_text(
        f"inputs:\n  - path: input/*.jsonl\noutput: out\nshard_size: 2000\nsteps:\n{DEFAULT_RECIPE_STEPS}"
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report = LocalEngine(workers=workers).run(load_recipe(recipe))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + children.ru_utime + children.ru_stime
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss)
    steps = {name: {"s": round(st.seconds, 2), "out": st.records_out} for name, st in report.steps.items()}
    print(json.dumps({"cpu": cpu, "wall": time.perf_counter() - wall0, "peak_rss_mb": peak_kb / 1024,
                      "records_out": report.records_out, "steps": steps,
                      "dedup_index_mb": _dedup_index_mb(recipe)}))  # fmt: skip


def _dedup_index_mb(recipe_path: Path) -> float:
    """Peak traced memory of the larger dedup decision: every shard's observations loaded, then decided.

    This is what the parent must hold for the whole corpus at once (the dedup index); everything else the
    engine holds is per shard or per slice. Re-run here on the run's own observation files, under tracemalloc.
    """
    import pickle
    import tracemalloc

    from keel.curate import load_recipe
    from keel.curate._recipe import build_steps
    from keel.curate._step import GlobalStep

    recipe = load_recipe(recipe_path)
    work = next((recipe.output_dir / ".keel-work").iterdir())
    peak = 0
    dedup = [step for step in build_steps(recipe.step_specs()) if isinstance(step, GlobalStep)]
    for stage, step in enumerate(dedup):  # stage N's shards hold the observations for the Nth global step
        tracemalloc.start()
        step.decide([pickle.loads(p.read_bytes()) for p in sorted((work / f"stage{stage}").glob("*.observation.pkl"))])
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return peak / 1e6


def run_recipe(n_docs: int, args: argparse.Namespace) -> dict[str, Any]:
    """The full default recipe on an n-document corpus, in a fresh process so its peak RSS is its own."""
    corpus = make_corpus(n_docs, args.dup_fraction, args.seed)
    with tempfile.TemporaryDirectory(prefix="keel-bench-recipe-") as tmp:
        corpus.write_jsonl(Path(tmp) / "input", shards=max(1, n_docs // 2000))
        done = subprocess.run(
            [sys.executable, __file__, "--recipe-child", tmp, "--workers", str(args.workers)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    mb = corpus.nbytes / 1e6
    return {
        "docs": n_docs, "mb": round(mb, 2), "mb_per_cpu_s": round(mb / result["cpu"], 2),
        "mb_per_s": round(mb / result["wall"], 2), "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "dedup_index_mb": round(result["dedup_index_mb"], 2),
        "records_out": result["records_out"], "step_seconds": result["steps"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1500, help="corpus size; 1500 docs is 8.5 MB, ~45 s for datatrove")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--dup-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--tools", default="datatrove,keel")
    parser.add_argument("--keel-seconds", type=float, default=10.0, help="repeat Keel's run for this long (median)")
    parser.add_argument("--keel-exact", action="store_true", help="Keel verifies pairs by exact Jaccard (keeps texts)")
    parser.add_argument(
        "--recipe-sizes", default="1500,6000,24000", help="corpus sizes for the full default recipe ('' to skip)"
    )
    parser.add_argument("--recipe-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recipe_child is not None:
        _recipe_child(args.recipe_child, args.workers)
        return
    tools = set(args.tools.split(","))

    params = MinHashParams(ngram=5, threshold=args.threshold)
    print(f"S-curve, {params.bands} bands x {params.rows} rows (P(candidate) by Jaccard):", file=sys.stderr)
    for s, p in params.s_curve(11):
        print(f"  {s:.1f}  {p:.4f}  {'#' * round(p * 40)}", file=sys.stderr)
    gen0 = time.perf_counter()
    corpus = make_corpus(args.docs, args.dup_fraction, args.seed)
    mb = corpus.nbytes / 1e6
    out: dict[str, Any] = {
        "benchmark": "curation_vs_datatrove", "docs": len(corpus.docs), "mb": round(mb, 2), "workers": args.workers,
        "copies": len(corpus.truth), "copies_at_threshold": sum(j >= args.threshold for _, j in corpus.truth.values()),
        "corpus_s": round(time.perf_counter() - gen0, 1), "ngram": params.ngram, "bands": params.bands,
        "rows": params.rows, "num_perm": params.num_perm, "threshold": params.threshold,
        "s_curve": params.s_curve(11), "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="keel-bench-dedup-") as tmp:
        work = Path(tmp)
        shards = max(args.workers, 1)
        paths = corpus.write_jsonl(work / "input", shards=shards)
        if "datatrove" in tools:
            dt = run_datatrove(work / "input", work / "datatrove", params, args.workers, shards)
            out["datatrove"] = {
                **speed(len(corpus.docs), mb, dt["wall"], dt["cpu"]),
                **quality(set(dt["removed"]), corpus, args.threshold),
            }
        if "keel" in tools:
            out["keel"] = run_keel(corpus, paths, work, params, args)
    if "datatrove" in out and "keel" in out:
        out["speedup_cpu"] = round(out["keel"]["mb_per_cpu_s"] / out["datatrove"]["mb_per_cpu_s"], 1)
        out["speedup_wall"] = round(out["keel"]["mb_per_s"] / out["datatrove"]["mb_per_s"], 1)
        out["meets_targets"] = bool(
            out["speedup_cpu"] >= TARGET_SPEEDUP
            and out["keel"]["precision"] >= TARGET_PRECISION
            and out["keel"]["recall"] >= TARGET_RECALL
        )
    sizes = [int(n) for n in args.recipe_sizes.split(",") if n]
    if sizes:
        out["full_recipe"] = [run_recipe(n, args) for n in sizes]
        out["full_recipe_meets_target"] = all(
            r["mb_per_cpu_s"] >= RECIPE_TARGET_MB_PER_CPU_S for r in out["full_recipe"]
        )
        if len(sizes) > 1:
            small, large = out["full_recipe"][0], out["full_recipe"][-1]
            growth = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 1e6 / (large["docs"] - small["docs"])
            out["peak_rss_growth_bytes_per_doc"] = round(growth)
            index = (large["dedup_index_mb"] - small["dedup_index_mb"]) * 1e6 / (large["docs"] - small["docs"])
            out["dedup_index_bytes_per_doc"] = round(index)
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
