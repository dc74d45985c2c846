"""The labelling loop's cost per answer: `next_item` + `record_label` as the terminal session calls them.

A queue of N items over a committed dataset version (SQLite) is labelled by one annotator, item after
item, as `keel label annotate` does: find the next item, store the answer in its own transaction.
The same run times the floor: one bare SQLAlchemy INSERT of the same row per answer in its own
transaction (what storing an answer costs with nothing else). Figures are CPU time per answer
(time.process_time), medians over rounds; wall-clock is printed with the load average.

    python benchmarks/label_queue.py [--items 1000 5000] [--answers 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa


def _round(items: int, answers: int) -> dict[str, float]:
    from keel.data import commit_version
    from keel.label import LabelSchema, create_queue, next_item, record_label, set_schema
    from keel.store import init_workspace
    from keel.store.schema import labels

    with tempfile.TemporaryDirectory() as folder:
        store = init_workspace(Path(folder) / "ws")
        rows = [{"id": f"r{i}", "text": f"ticket {i} about billing or a bug"} for i in range(items)]
        commit_version(store, "tickets", pa.Table.from_pylist(rows))
        set_schema(store, "tickets", LabelSchema("classes", ("billing", "bug", "other")))
        queue = create_queue(store, "q", "data:tickets")
        next_item(store, queue)  # reads the version's texts once, as a session does on its first item
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(answers):
            item = next_item(store, queue)
            assert item is not None
            record_label(store, queue, item.position, "bug", origin="terminal")
        keel_cpu, keel_wall = time.process_time() - cpu, time.perf_counter() - wall
        now = store.clock()
        cpu = time.process_time()
        for n in range(answers):
            with store.db.write() as conn:
                row = {"queue": "q", "position": answers + n, "annotator": "user:bare", "status": "labelled",
                       "value": '"bug"', "origin": "cli", "at": now}  # fmt: skip
                conn.execute(labels.insert().values(**row))
        bare_cpu = time.process_time() - cpu
        store.close()
    return {"keel_ms": 1000 * keel_cpu / answers, "keel_wall_ms": 1000 * keel_wall / answers,
            "bare_insert_ms": 1000 * bare_cpu / answers}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result: dict[str, object] = {"benchmark": "label_queue", "answers": args.answers, "rounds": args.rounds}
    for items in args.items:
        runs = [_round(items, min(args.answers, items // 2)) for _ in range(args.rounds)]
        keel = statistics.median(r["keel_ms"] for r in runs)
        bare = statistics.median(r["bare_insert_ms"] for r in runs)
        result[f"items_{items}"] = {
            "cpu_ms_per_answer": round(keel, 3),
            "wall_ms_per_answer": round(statistics.median(r["keel_wall_ms"] for r in runs), 3),
            "bare_insert_cpu_ms": round(bare, 3),
            "ratio_vs_bare_insert": round(keel / bare, 2),
        }
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
