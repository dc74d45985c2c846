"""How long `keel --help` takes to start, against a bare Python interpreter measured in the same run.

Runs each command `--runs` times after `--warmup` runs (as hyperfine does), in fresh processes, and reports the
median wall time and the median CPU time (user + system, from the children's rusage, which does not count time
spent waiting for a core on a busy machine). Also lists the slowest imports of `import keel.cli` from
`python -X importtime`, and whether any heavy library is among them.

    python benchmarks/cli_startup.py [--runs 10] [--warmup 2]

Prints one JSON line. The target is `keel --help` under 0.3 s.
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
import time

HEAVY = ("pyarrow", "torch", "transformers", "sqlalchemy", "numpy", "pandas", "alembic", "pydantic_settings")


def _time(command: list[str], runs: int, warmup: int) -> dict[str, float]:
    walls, cpus = [], []
    for i in range(warmup + runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= warmup:
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {
        "wall_s_median": round(statistics.median(walls), 4),
        "wall_s_min": round(min(walls), 4),
        "cpu_s_median": round(statistics.median(cpus), 4),
    }


def _imports(module: str) -> tuple[float, list[tuple[str, float]]]:
    """Total seconds of `import module` and its ten slowest self-contained imports (cumulative), by importtime."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True).stderr  # fmt: skip
    rows = []
    for line in out.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            rows.append((name, int(cumulative) / 1e6))
    total = next((seconds for name, seconds in rows if name == module), 0.0)
    return total, sorted(rows, key=lambda row: -row[1])[:10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    keel = shutil.which("keel", path=os.path.dirname(sys.executable)) or "keel"
    help_cmd = [keel, "--help"]
    python = [sys.executable, "-c", "pass"]
    total, slowest = _imports("keel.cli")
    probe = f"import sys, keel.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    measured = _time(help_cmd, args.runs, args.warmup)
    peer = _time(python, args.runs, args.warmup)
    result = {
        "benchmark": "cli_startup",
        "runs": args.runs,
        "keel_help": measured,
        "peer_python_c_pass": peer,
        "ratio_cpu_to_bare_python": round(measured["cpu_s_median"] / max(peer["cpu_s_median"], 1e-6), 2),
        "target_s": 0.3,
        "meets_target_cpu": measured["cpu_s_median"] < 0.3,
        "meets_target_wall_min": measured["wall_s_min"] < 0.3,
        "import_keel_cli_s": round(total, 4),
        "slowest_imports": [[name, round(seconds, 4)] for name, seconds in slowest],
        "heavy_imported_by_keel_cli": heavy,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
