"""Planning and cache-check time of a generated 200-stage pipeline, against `dvc status` on the same DAG.

The pipeline: 20 layers of 10 shell stages; each stage reads two files of the layer before (and a param)
and writes one file. It is run once for real (every stage executes and is recorded), then timed:
`load_pipeline` (validation, params, DAG) plus `plan_pipeline` (every input hashed, every cache key looked
up), which is what `keel pipeline run` does before deciding that nothing needs to run. The peer is DVC's
`dvc status` on the equivalent `dvc.yaml` after `dvc repro`, timed in the same run, when a `dvc`
executable is given (`--dvc PATH`) or on PATH.

    python benchmarks/pipeline.py [--stages 200] [--repeats 5] [--dvc /path/to/dvc]

Prints one JSON line. Target: plan + cache check under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from keel.pipeline import load_pipeline, plan_pipeline, run_pipeline
from keel.store import init_workspace

TARGET_S = 1.0
WIDTH = 10


def write_project(root: Path, stages: int) -> None:
    """pipeline.yaml and the equivalent dvc.yaml, and the seed files of the first layer."""
    keel_stages: dict[str, dict[str, object]] = {}
    dvc_stages: dict[str, dict[str, object]] = {}
    (root / "seed").mkdir()
    for i in range(WIDTH):
        (root / "seed" / f"{i}.txt").write_text(f"seed {i}\n" * 100)
    for n in range(stages):
        layer, slot = divmod(n, WIDTH)
        if layer == 0:
            reads = [f"seed/{slot}.txt", f"seed/{(slot + 1) % WIDTH}.txt"]
        else:
            reads = [f"out/s{(layer - 1) * WIDTH + slot}.txt", f"out/s{(layer - 1) * WIDTH + (slot + 1) % WIDTH}.txt"]
        out = f"out/s{n}.txt"
        command = f"mkdir -p out && cat {' '.join(reads)} | head -c 4000 > {out} && echo {n} >> {out}"
        keel_stages[f"s{n}"] = {"run": command + " # ${params.tag}", "inputs": reads, "outputs": [out]}
        dvc_stages[f"s{n}"] = {"cmd": command + " # ${tag}", "deps": reads, "outs": [out]}
    (root / "pipeline.yaml").write_text(json.dumps({"name": "bench", "params": {"tag": "a"}, "stages": keel_stages}))
    (root / "params.yaml").write_text("tag: a\n")
    (root / "dvc.yaml").write_text(json.dumps({"vars": ["params.yaml"], "stages": dvc_stages}))


def time_keel(root: Path, repeats: int) -> dict[str, float]:
    """Run once for real, then time load + plan (all cached) `repeats` times."""
    store = init_workspace(root / "ws")
    try:
        _, outcomes = run_pipeline(store, load_pipeline(root / "pipeline.yaml"))
        assert all(o.status == "finished" for o in outcomes), "the first run must execute every stage"
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            plan = plan_pipeline(store, load_pipeline(root / "pipeline.yaml"))
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            assert all(p.action == "cached" for p in plan), "a second plan must find every stage cached"
        return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}
    finally:
        store.close()


def time_dvc(root: Path, dvc: str, repeats: int) -> dict[str, float] | None:
    """`dvc repro` once, then time `dvc status` (wall, and the child's CPU time)."""
    work = root / "dvc"
    work.mkdir()
    for name in ("seed", "dvc.yaml", "params.yaml"):
        source = root / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=work, check=True, env=env)
    subprocess.run([dvc, "repro", "-q"], cwd=work, check=True, env=env, capture_output=True)
    walls, cpus = [], []
    for _ in range(repeats):
        before = os.times()
        wall = time.perf_counter()
        done = subprocess.run([dvc, "status", "--json"], cwd=work, env=env, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - wall)
        after = os.times()
        cpus.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
        assert json.loads(done.stdout) == {}, "dvc status must find every stage up to date"
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dvc", default=shutil.which("dvc"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root, args.stages)
        keel = time_keel(root, args.repeats)
        peer = time_dvc(root, args.dvc, args.repeats) if args.dvc else None
    result = {
        "benchmark": "pipeline_plan_cache_check",
        "stages": args.stages,
        "keel_wall_s": round(keel["wall_s"], 3),
        "keel_cpu_s": round(keel["cpu_s"], 3),
        "target_s": TARGET_S,
        "meets_target": keel["wall_s"] < TARGET_S,
        "peer": "dvc status" if peer else None,
        "peer_wall_s": round(peer["wall_s"], 3) if peer else None,
        "peer_cpu_s": round(peer["cpu_s"], 3) if peer else None,
        "wall_ratio_vs_peer": round(keel["wall_s"] / peer["wall_s"], 3) if peer else None,
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
