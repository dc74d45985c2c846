"""`keel curate run` of the full recipe with the commit, two source trees alternated: CPU seconds per run.

On a shared machine a command's CPU time moves by 10-20% with the load, so two trees measured minutes apart
(as `curation_full_recipe.py` run once per tree does) can differ by more than a change is worth. This runs
the same command (`keel curate run recipe.yaml --json`, committing into a fresh workspace each time, one
worker, the recipe and real-text corpus of `curation_full_recipe.py`) for tree A, then tree B, `--rounds`
times, after one untimed warm-up round (bytecode cached per tree, page cache warm), and reports every run,
each tree's least and median CPU time, and the median of the per-round ratios B/A (pairs run back to back
see nearly the same load).

    python benchmarks/curation_cli_alternate.py --a /work/main/src --b src [--rounds 6] [--limit 0]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curation_full_recipe import RECIPE, build  # noqa: E402


def _run(keel: list[str], ws: Path, corpus: Path, env: dict[str, str]) -> tuple[float, int]:
    shutil.rmtree(ws, ignore_errors=True)
    subprocess.run([*keel, "init", str(ws)], env=env, capture_output=True, check=True)
    (ws / "corpus.jsonl").symlink_to(corpus)
    (ws / "recipe.yaml").write_text(RECIPE)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [*keel, "curate", "run", "recipe.yaml", "--json"], cwd=ws, env=env, capture_output=True, text=True, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, json.loads(out.stdout)["records_out"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", required=True, help="tree A's source folder (its `keel` package's parent)")
    parser.add_argument("--b", required=True, help="tree B's source folder")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds (each: A then B)")
    parser.add_argument("--limit", type=int, default=0, help="source documents of the corpus (0: all)")
    args = parser.parse_args()
    trees = {"a": str(Path(args.a).resolve()), "b": str(Path(args.b).resolve())}
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    base["OMP_NUM_THREADS"] = "1"
    runs: dict[str, list[float]] = {"a": [], "b": []}
    records: dict[str, set[int]] = {"a": set(), "b": set()}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = build(root, args.limit, 0)
        mb = sum(len(json.loads(line)["text"].encode()) for line in corpus.open(encoding="utf-8")) / 1e6
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for name, src in trees.items():
                env = base | {"PYTHONPATH": src, "PYTHONPYCACHEPREFIX": str(root / f"pycache-{name}")}
                keel = [sys.executable, "-m", "keel"]
                cpu, out = _run(keel, root / f"ws-{name}", corpus, env)
                if round_:
                    runs[name].append(cpu)
                    records[name].add(out)
            loads.append(os.getloadavg()[0])
    ratios = [b / a for a, b in zip(runs["a"], runs["b"], strict=True)]
    result = {
        "benchmark": "curation_cli_alternate",
        "mb": round(mb, 2),
        "rounds": args.rounds,
        "cpu_s": {name: [round(c, 3) for c in cpus] for name, cpus in runs.items()},
        "least_cpu_s": {name: round(min(cpus), 3) for name, cpus in runs.items()},
        "median_cpu_s": {name: round(statistics.median(cpus), 3) for name, cpus in runs.items()},
        "mb_per_cpu_s_at_least": {name: round(mb / min(cpus), 2) for name, cpus in runs.items()},
        "median_ratio_b_over_a": round(statistics.median(ratios), 3),
        "records_out": {name: sorted(r) for name, r in records.items()},
        "load_average_1m": [round(min(loads), 2), round(max(loads), 2)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
