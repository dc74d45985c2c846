"""The full default recipe on real documentation text writes the same bytes as before speed work touched it.

A pinned digest, not a comparison of two runs of today's code: speed-ups of the reader, the steps, the
engine or the commit must leave every output byte as it was. The digest was taken with the tree before the
issue-18 performance work (commit 462a19c) and again after it; python3-doc 3.11's pages (Debian bookworm,
what .ci/run installs) and the locked pyarrow make the bytes. If a change of results is intended, say so in
the commit and pin the new digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from keel.curate import LocalEngine, load_recipe

RECIPE = """inputs:
  - path: corpus.jsonl
    id_field: id
output: out
shard_size: 40
steps:
  - normalize: {}
  - language: {languages: [en], min_score: 0.5}
  - quality: {preset: documents}
  - exact_dedup: {}
  - near_dedup: {threshold: 0.8}
  - pii: {}
"""

# `_digest` of the run, the same with the tree before the speed work and after it. Re-pinned once when outputs
# began to type `id` as a commit does (nullable, so a commit stores them as shards as they are): with `id` cast
# back to `not null`, the run gave the earlier digest,
# 6c546247b290cbf363f5bec5730b9ebd1534d23c397cabe40cf5d38ae4da60eb.
PINNED = "f6a0099cd9a146b187369f2178152f60966f238861ba6932bf818954eabee5b8"


def _corpus(pages: list[Any]) -> list[dict[str, str]]:
    """Every sixth page, exact copies, near copies (first line cut), and three other pages given an SSN and more."""
    docs = [{"id": f"p{i:04d}", "text": p.text} for i, p in enumerate(pages[::6])]
    exact = [{"id": f"e{i}", "text": d["text"]} for i, d in enumerate(docs[:5])]
    near = [{"id": f"n{i}", "text": d["text"].split("\n", 1)[-1]} for i, d in enumerate(docs[5:10])]
    pii = [  # pages the sample left out, so the dedup steps keep them
        {
            "id": f"s{i}",
            "text": p.text + f"\nPassport number: X12345{i:02d}. SSN 123 45 67{i:02d}. Call 212-555-01{i:02d}.",
        }
        for i, p in enumerate(pages[1::6][:3])
    ]
    return docs + exact + near + pii


def _digest(out: Path, report: dict[str, Any]) -> str:
    """sha256 of every output shard's rows (Arrow IPC bytes) and the report's counts.

    The rows without `source.uri` and `source.fetched_at`, which name the test's temporary folder and the
    corpus file's mtime; every other value, its type and its order is pinned (the source's sha256 included).
    """
    digest = hashlib.sha256()
    for path in sorted((out / "data").glob("*.parquet")):
        table = pq.read_table(path)
        source = table.column("source").combine_chunks()
        table = table.set_column(table.column_names.index("source"), "source_sha256", source.field("sha256"))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(path.name.encode() + b"\x00" + sink.getvalue().to_pybytes())
    counters = {name: {k: v for k, v in step.items() if k != "seconds"} for name, step in report["steps"].items()}
    digest.update(json.dumps([report["records_out"], counters, report["global"]], sort_keys=True).encode())
    return digest.hexdigest()


def test_the_full_recipe_writes_the_pinned_bytes_on_real_text(doc_pages: list[Any], tmp_path: Path) -> None:
    with (tmp_path / "corpus.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in _corpus(doc_pages))
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    report = LocalEngine(workers=1).run(load_recipe(tmp_path / "recipe.yaml")).to_json()
    steps = report["steps"]
    # The run exercises what it pins: copies dropped by both dedup steps, findings redacted by the pii step.
    assert steps["exact_dedup"]["dropped"] and steps["near_dedup"]["dropped"], steps
    assert steps["pii"]["counters"].get("found.us_ssn", 0) >= 3, steps["pii"]
    assert _digest(tmp_path / "out", report) == PINNED
