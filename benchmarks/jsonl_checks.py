"""What the read-time checks of `keel data commit` cost: Keel's checked JSONL reader against pyarrow's.

Both read the same JSON-lines file into an Arrow table. Keel's reader (`read_jsonl_table`) also
checks the bytes are UTF-8, scans every line for nesting, non-finite numbers, integers past int64 and
lone surrogates, validates the arrays Arrow built, and re-reads when Arrow inferred timestamps. The
peer is `pyarrow.json.read_json` alone, and for scale Python's `json.loads` line by line.

    python benchmarks/jsonl_checks.py [--records 200000] [--repeat 3]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson

from keel.data._inputs import read_jsonl_table

WORDS = "policy refund customer order shipping invoice account password reset warranty product manual".split()


def write_corpus(path: Path, records: int, seed: int) -> None:
    """Support-ticket-like records: text, a nested meta object, numbers, a list, a 19-digit id in some."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(records):
            row = {
                "id": f"t-{i:08d}",
                "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) + " — café",
                "meta": {"score": rng.random(), "votes": rng.randint(0, 10_000), "tags": rng.sample(WORDS, 3)},
                "order": rng.randint(10**18, 9 * 10**18) if i % 10 == 0 else rng.randint(0, 10**6),
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def best_of(repeat: int, run: object) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tickets.jsonl"
        write_corpus(path, args.records, seed=0)
        size = path.stat().st_size

        def pyarrow_only() -> pa.Table:
            data = path.read_bytes()
            return pajson.read_json(pa.BufferReader(data), read_options=pajson.ReadOptions(block_size=1 << 24))

        def python_json() -> int:
            with path.open("rb") as stream:
                return sum(1 for line in stream if json.loads(line))

        keel_rows = read_jsonl_table(path).num_rows
        assert keel_rows == pyarrow_only().num_rows == args.records
        keel = best_of(args.repeat, lambda: read_jsonl_table(path))
        arrow = best_of(args.repeat, pyarrow_only)
        python = best_of(args.repeat, python_json)
    print(
        json.dumps(
            {
                "benchmark": "jsonl_checks",
                "records": args.records,
                "mb": round(size / 1e6, 1),
                "keel_checked_read_s": round(keel, 3),
                "pyarrow_read_json_s": round(arrow, 3),
                "python_json_loads_s": round(python, 3),
                "keel_mb_per_s": round(size / 1e6 / keel, 1),
                "ratio_keel_to_pyarrow": round(keel / arrow, 2),
                "ratio_keel_to_python_json": round(keel / python, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
