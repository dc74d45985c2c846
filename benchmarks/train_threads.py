"""The demo's fine-tune on a given number of torch threads: wall of the training loop and CPU of the whole run.

Needs a workspace made by `keel demo --fast` (its `pipeline/train.yaml` and datasets). Trains the config for
`--steps` steps as model `bench-<tag>`, with `training.threads` set to `--threads` (or left unset: Keel's default).
Set `OMP_WAIT_POLICY` in the environment to compare libgomp's wait policies (it is read when torch loads).

    keel demo /tmp/demo --fast
    python benchmarks/train_threads.py /tmp/demo --threads 1 --steps 100

Prints one JSON line, with the load average beside the figures; alternate the variants in the same minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# benchmarks/datasets.py would shadow the `datasets` package the trainer imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main() -> None:
    """Parse arguments, train once, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--threads", type=int, default=None, help="training.threads (default: unset)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--tag", default=None, help="names the registered model bench-<tag>")
    args = parser.parse_args()
    from keel.core.settings import load_settings, read_config_file
    from keel.registry import get_run
    from keel.store import open_store
    from keel.train import parse_train_config, train

    data = read_config_file(args.workspace / "pipeline" / "train.yaml", "training config")
    data["name"] = "bench-" + (args.tag or str(os.getpid()))
    data["training"] = {**data["training"], "max_steps": args.steps, "save_steps": args.steps}
    data["training"].pop("threads", None)
    if args.threads is not None:
        data["training"]["threads"] = args.threads
    store = open_store(load_settings(args.workspace))
    load_before = os.getloadavg()[0]
    cpu, wall = time.process_time(), time.perf_counter()
    result = train(store, parse_train_config(data), resume=None)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    with store.db.read() as conn:
        used = get_run(conn, result.run_id or "").params["torch_threads"]
    line = {
        "threads": args.threads,
        "torch_threads": used,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "steps": args.steps,
        "train_loop_wall_s": round(result.train_seconds, 1),
        "run_wall_s": round(wall, 1),
        "run_cpu_s": round(cpu, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
