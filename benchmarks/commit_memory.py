"""Peak memory and CPU of `keel data commit` on one JSON-lines file, against the file's size.

Builds a JSONL file of about `--mb` megabytes of varied text (ASCII and non-ASCII words, nested
metadata), then runs `keel data commit` in a fresh process into a fresh workspace and reports that
process's peak resident memory (ru_maxrss) and CPU seconds (user + system). `--base TREE` runs the
same commit with another source tree (e.g. a worktree of main) in alternation, for a same-run ratio.

    python benchmarks/commit_memory.py [--mb 100 400] [--base /work/wt/bigfiles-base] [--repeat 1]

Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
WORDS = (
    "the of data commit keel version shard table arrow memory line record café naïve façade Straße "
    "größe 東京 データ 記録 Привет мир résumé coöperate θάλασσα λόγος 🙂 ✓ über jalapeño"
).split()


def build(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write about `megabytes` MB of JSON lines to `path`; returns the number of lines."""
    rng = random.Random(seed)
    lines = []
    for i in range(2000):  # 2000 distinct lines, repeated with a fresh id each time
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 400)))
        lines.append({"text": text, "meta": {"n": i, "score": rng.random(), "tags": rng.sample(WORDS, 3)}})
    target, written, count = int(megabytes * 1e6), 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            row = dict(lines[count % len(lines)], id=f"r{count}")
            line = json.dumps(row, ensure_ascii=False) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
            count += 1
    return count


def commit(tree: Path, file: Path, work: Path) -> dict[str, float | int]:
    """Run `keel data commit` with `tree`'s sources in a fresh workspace; peak RSS (MB) and CPU-s of that process."""
    workspace = Path(tempfile.mkdtemp(dir=work))
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS="1", KEEL_WORKSPACE=str(workspace))
    code = "import sys; from keel.cli import app; sys.argv[0] = 'keel'; app()"
    run = [sys.executable, "-c", code]
    subprocess.run([*run, "init", str(workspace)], env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [*run, "data", "commit", "bench", str(file), "-m", "bench"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{tree}: keel data commit failed: {process.stderr.read().decode() if process.stderr else ''}")
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[100.0, 400.0])
    parser.add_argument("--base", type=Path, help="another source tree to compare with (its src/ is imported)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-bench-commit-memory-") as tmp:
        work = Path(tmp)
        for megabytes in args.mb:
            file = work / f"input-{megabytes:g}.jsonl"
            rows = build(file, megabytes)
            result: dict[str, object] = {"input_mb": round(file.stat().st_size / 1e6, 1), "rows": rows}
            trees = {"after": HERE} | ({"before": args.base} if args.base else {})
            for _ in range(args.repeat):  # alternate trees in the same minutes
                for name, tree in trees.items():
                    figures = commit(tree, file, work)
                    kept = result.get(name)
                    if not isinstance(kept, dict) or figures["peak_rss_mb"] < kept["peak_rss_mb"]:
                        result[name] = figures
            for name in trees:
                figures = result[name]
                assert isinstance(figures, dict)
                figures["rss_per_input_mb"] = round(figures["peak_rss_mb"] / result["input_mb"], 2)  # type: ignore[operator]
            result["load"] = os.getloadavg()[0]
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
