"""The curation engine on Ray Data against the local engine: same corpus, same recipe, same machine, same run.

Builds the synthetic web-like corpus of `_corpus.py` (exact and near copies), writes it as JSONL shards, then
runs the recipe normalize -> quality -> exact_dedup -> near_dedup with `LocalEngine(workers=N)` and with
`RayEngine` on a local Ray runtime of N CPUs. Ray's start-up (tens of seconds on a loaded machine) and a first
small run (workers importing Keel and Ray Data) are timed apart, since a cluster is started once for many runs.

    python benchmarks/curation_ray.py [--docs 4000] [--files 4] [--cpus 2] [--shard-size 500] [--repeat 3]

Prints one JSON line: per engine the median seconds of `--repeat` runs (the engines alternate, so a change in
the machine's load touches both), docs/s and MB/s; `overhead` = median ray seconds / median local seconds on a
warm runtime (target <= 1.5; the local engine's figure includes spawning its worker pool, as every local run does);
`overhead_cold` charging Ray's start-up and first small run to this run too; whether both kept exactly the
same record ids and counts; and the dedup phases' data volumes measured on this corpus (signature bytes, band
rows, candidate and verified pairs), which docs/scale-out.md extrapolates.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from _corpus import make_corpus
from keel.curate import LocalEngine, RayEngine, Recipe, load_recipe

TARGET_OVERHEAD = 1.5
RECIPE = """inputs:
  - path: corpus/*.jsonl
    id_field: id
output: {output}
shard_size: {shard_size}
steps:
  - normalize: {{}}
  - quality: {{}}
  - exact_dedup: {{}}
  - near_dedup: {{threshold: 0.8}}
"""


def _ids(out: Path) -> list[str]:
    ids: list[str] = []
    for part in sorted((out / "data").glob("part-*.parquet")):
        ids += pq.read_table(part, columns=["id"]).column("id").to_pylist()
    return ids


def _counts(report: dict[str, Any]) -> list[Any]:
    steps = {name: {k: v for k, v in stats.items() if k != "seconds"} for name, stats in report["steps"].items()}
    return [steps, report["global"], report["records_read"], report["records_out"]]


def _warm_up(root: Path, cpus: int) -> Recipe:
    (root / "warm" / "corpus").mkdir(parents=True)
    lines = (root / "corpus" / "shard-00000.jsonl").read_text().splitlines()[:40]
    (root / "warm" / "corpus" / "a.jsonl").write_text("\n".join(lines) + "\n")
    (root / "warm" / "r.yaml").write_text(RECIPE.format(output="out", shard_size=10))
    return load_recipe(root / "warm" / "r.yaml")


def _run(engine: str, root: Path, name: str, shard_size: int, cpus: int) -> tuple[float, list[str], dict[str, Any]]:
    (root / f"{name}.yaml").write_text(RECIPE.format(output=f"out-{name}", shard_size=shard_size))
    recipe = load_recipe(root / f"{name}.yaml")
    runner = RayEngine(num_cpus=cpus) if engine == "ray" else LocalEngine(workers=cpus)
    started = time.perf_counter()
    report = runner.run(recipe)
    seconds = time.perf_counter() - started
    ids = _ids(root / f"out-{name}")
    shutil.rmtree(root / f"out-{name}")
    return seconds, ids, report.to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--files", type=int, default=4, help="JSONL files the corpus is written as")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per engine, interleaved")
    args = parser.parse_args()

    import ray

    root = Path(tempfile.mkdtemp(prefix="keel-curation-ray-"))
    try:
        corpus = make_corpus(args.docs, dup_fraction=0.3, seed=0)
        corpus.write_jsonl(root / "corpus", shards=args.files)
        megabytes = corpus.nbytes / 1e6
        cold: dict[str, float] = {}
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # The object store at Ray's default size, as RayEngine starts it: a store smaller than the corpus
            # spills blocks to disk (a 500 MB store made the 64k-document run ~25% slower).
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        cold["startup_s"] = round(time.perf_counter() - started, 2)
        # A cluster serves many runs: its workers have imported Keel and Ray Data before the timed runs.
        # Warm them on a 40-document copy of the corpus and report that first (cold) run apart.
        started = time.perf_counter()
        RayEngine().run(_warm_up(root, args.cpus))
        cold["cold_small_run_s"] = round(time.perf_counter() - started, 2)
        # Runs alternate between the engines, so a change in the machine's load touches both alike; the local
        # engine's figure includes spawning its worker pool, as every local run does.
        seconds: dict[str, list[float]] = {"local": [], "ray": []}
        ids: dict[str, list[list[str]]] = {"local": [], "ray": []}
        reports: dict[str, dict[str, Any]] = {}
        for rep in range(args.repeat):
            for engine in ("local", "ray"):
                took, kept, reports[engine] = _run(engine, root, f"{engine}-{rep}", args.shard_size, args.cpus)
                seconds[engine].append(round(took, 2))
                ids[engine].append(kept)
        ray.shutdown()
        median = {engine: statistics.median(values) for engine, values in seconds.items()}
        results = {
            engine: {
                "seconds": median[engine],
                "runs": seconds[engine],
                "docs_per_s": round(args.docs / median[engine], 1),
                "mb_per_s": round(megabytes / median[engine], 3),
            }
            for engine in seconds
        }
        near = reports["ray"]["global"]["near_dedup"]
        num_perm, bands = 112, int(near["bands"])
        line = {
            "benchmark": "curation_ray",
            "docs": args.docs,
            "files": args.files,
            "mb": round(megabytes, 2),
            "cpus": args.cpus,
            "local": results["local"],
            "ray": {**results["ray"], **cold},
            # Median Ray run over median local run on a warm runtime.
            "overhead": round(median["ray"] / median["local"], 2),
            "overhead_runs": [round(r / loc, 2) for r, loc in zip(seconds["ray"], seconds["local"], strict=True)],
            # Upper bound for a one-off run: Ray's start-up and cold workers charged to this run alone.
            "overhead_cold": round((cold["startup_s"] + cold["cold_small_run_s"] + median["ray"]) / median["local"], 2),
            "target_overhead": TARGET_OVERHEAD,
            "same_ids": all(run == ids["local"][0] for runs in ids.values() for run in runs),  # every run
            "same_counts": _counts(reports["local"]) == _counts(reports["ray"]),
            "kept": len(ids["ray"][0]),
            "dedup_volumes": {
                "exact_key_bytes_per_doc": 8 + 8 + 4,  # hash, _order, bucket
                "signature_bytes_per_doc": 4 * num_perm,
                "band_rows_per_doc": bands,
                "near_documents": near["documents"],
                "candidate_pairs": near["candidate_pairs"],
                "verified_pairs": near["verified_pairs"],
                "duplicates": near["duplicates"],
            },
        }
        print(json.dumps(line))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
