"""CPU cost of quarantining repeated ids (keel.curate._duplicate_ids) against reading the same input.

Writes the real-text corpus (benchmarks/real_text_corpus.py) as JSONL with an `id` per line, in 4 files, then
measures with `time.process_time`, in one process, the least of `--repeats` runs of:

- `read`: reading every file with `read_file` (id_field set), what the read stage pays anyway;
- `first_ids_only`: the same read through the per-file check (so its cost is the difference);
- `across_files`: the parent's pass over the read shards' id columns (written here as the engine writes them)
  when no id repeats, the common case;
- with `--repeat-share`, the same pass when that share of each later file repeats ids of the first file
  (re-reading the files concerned for lines, rewriting their shards).

    python benchmarks/curation_duplicate_ids.py [--corpus corpus.jsonl] [--limit 0] [--repeats 3]

Prints one JSON line with the CPU seconds, the overheads as a share of `read`, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from keel.curate._duplicate_ids import first_ids_only, quarantine_repeats_across_files
from keel.curate._engine import _shard_table, _write_json, _write_parquet
from keel.curate._problems import Problem
from keel.curate._readers import read_file
from keel.curate._recipe import ResolvedInput

FILES = 4
SHARD = 2000


def _write_corpus(texts: list[str], folder: Path, repeat_share: float) -> list[ResolvedInput]:
    per_file = -(-len(texts) // FILES)
    sources = []
    for f in range(FILES):
        path = folder / f"part{f}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for i, text in enumerate(texts[f * per_file : (f + 1) * per_file]):
                repeats = f > 0 and i < repeat_share * per_file
                out.write(json.dumps({"id": f"doc-{i}" if repeats else f"doc-{f}-{i}", "text": text}) + "\n")
        sources.append(ResolvedInput(path.resolve(), "jsonl", "text", "id", None, "utf-8"))
    return sources


def _read(source: ResolvedInput, check: bool) -> list[dict[str, Any]]:
    items = read_file(source.path, "jsonl", text_field="text", id_field="id")
    return [item for item in (first_ids_only(items, source) if check else items) if not isinstance(item, Problem)]


def _across_files(sources: list[ResolvedInput], folder: Path) -> float:
    """CPU seconds of the parent's pass, on read shards and markers written as the engine writes them."""
    read_dir = folder / "read"
    shutil.rmtree(read_dir, ignore_errors=True)
    read_dir.mkdir()
    results = []
    for index, source in enumerate(sources):
        records = _read(source, True)
        names, digests = [], {}
        for j in range(0, len(records), SHARD):
            name = f"{index:05d}-{j // SHARD:04d}"
            digests[name] = _write_parquet(
                _shard_table(records[j : j + SHARD]), read_dir / f"{name}.parquet", final=False
            )
            names.append(name)
        (read_dir / f"{index:05d}.quarantine.jsonl").write_bytes(b"")
        results.append({"shards": names, "records": len(records), "problems": {}, "digests": digests})
    started = time.process_time()
    write = lambda table, path: _write_parquet(table, path, final=False)  # noqa: E731
    quarantine_repeats_across_files(sources, results, read_dir, False, write, _write_json)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", help="a JSONL file with a `text` field (default: build the real-text corpus)")
    parser.add_argument("--limit", type=int, default=0, help="source documents when building the corpus (0: all)")
    parser.add_argument("--repeats", type=int, default=3, help="the least CPU time of this many runs is kept")
    parser.add_argument("--repeat-share", type=float, default=0.1, help="share of each later file repeating ids")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_text_corpus import corpus_texts  # type: ignore[import-not-found]

    texts = corpus_texts(args.corpus, args.limit)
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    with tempfile.TemporaryDirectory() as tmp:
        unique, repeated = Path(tmp) / "unique", Path(tmp) / "repeated"
        unique.mkdir()
        repeated.mkdir()
        sources = _write_corpus(texts, unique, 0.0)
        with_repeats = _write_corpus(texts, repeated, args.repeat_share)
        for _ in range(args.repeats):
            for check in (False, True):
                started = time.process_time()
                for source in sources:
                    _read(source, check)
                keep("first_ids_only" if check else "read", time.process_time() - started)
            keep("across_files", _across_files(sources, unique))
            keep("across_files_with_repeats", _across_files(with_repeats, repeated))
        rows = sum(pq.read_metadata(p).num_rows for p in (repeated / "read").glob("*.parquet"))
    read = best["read"]
    print(
        json.dumps(
            {
                "benchmark": "curation_duplicate_ids",
                "documents": len(texts),
                "files": FILES,
                "repeats": args.repeats,
                "cpu_s": {name: round(seconds, 4) for name, seconds in best.items()},
                "overhead_of_read": {
                    "first_ids_only": round((best["first_ids_only"] - read) / read, 4),
                    "across_files": round(best["across_files"] / read, 4),
                    "across_files_with_repeats": round(best["across_files_with_repeats"] / read, 4),
                },
                "repeat_share": args.repeat_share,
                "rows_kept_with_repeats": rows,
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
