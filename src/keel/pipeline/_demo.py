"""`keel demo`: the loop so far, offline, on a few documents of a fictional company.

Today it shows the foundation and curation: a workspace, content-addressed storage that keeps one
copy of duplicate documents, a curation recipe (language filter, dedup, PII redaction), provenance
edges from each source to its bytes, and the tamper-evident audit log. Versions, training,
evaluation and serving join the demo as they land (ARCHITECTURE.md, "The loop Keel runs").
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.core.ids import sha256_hex
from keel.store import Edge, LineageHit, VerifyReport, add_edges, init_workspace, verify, walk

__all__ = ["DemoReport", "run_demo"]

# Two URLs serve the same refund policy: the store keeps it once, and lineage remembers both.
SAMPLE_DOCUMENTS: tuple[tuple[str, str], ...] = (
    ("https://intranet.acme.example/policies/refunds", "Refunds are issued within 14 days of a return.\n"),
    ("https://help.acme.example/refunds", "Refunds are issued within 14 days of a return.\n"),
    ("https://intranet.acme.example/products/anvil", "The ACME Anvil weighs 50 kg and ships in two days.\n"),
    ("https://help.acme.example/tickets/4411", "Customer asks whether anvils can be sent to a PO box.\n"),
    (
        "https://help.acme.example/tickets/4412",
        "Please refund order 7731 to jane.doe@example.com, phone +1 415 555 0134.\n",
    ),
    (
        "https://intranet.acme.example/de/rueckgabe",
        "Rückerstattungen erfolgen innerhalb von 14 Tagen nach der Rückgabe.\n",
    ),
)

DEMO_RECIPE = """inputs:
  - path: raw/documents.jsonl
output: curated
steps:
  - normalize: {}
  - language: {languages: [en], min_score: 0.3}
  - exact_dedup: {}
  - pii: {}
"""


@dataclass
class DemoReport:
    """What the demo did, for printing or for tests."""

    workspace: Path
    sources: int = 0
    blobs_stored: int = 0
    duplicates: int = 0
    provenance: dict[str, list[LineageHit]] = field(default_factory=dict)
    curation: Any = None  # a keel.data.CurationReport
    audit: VerifyReport | None = None


def run_demo(directory: Path, say: Callable[[str], None] = print) -> DemoReport:
    """Run the demo in `directory` (created if missing), narrating each stage through `say`.

    Args:
        directory: Where to create the demo workspace.
        say: Receives one line of narrative per stage.

    Returns:
        What was stored, recorded and verified.
    """
    store = init_workspace(directory)
    report = DemoReport(workspace=store.settings.workspace)
    say(f"1. Workspace ready at {report.workspace} (metadata: {store.db.display_url})")
    try:
        with store.db.write() as conn:
            edges = []
            for uri, text in SAMPLE_DOCUMENTS:
                info = store.put_blob(io.BytesIO(text.encode()), conn=conn)
                report.sources += 1
                report.blobs_stored += info.created
                report.duplicates += not info.created
                source = f"source:{uri}"
                edges.append(Edge(source, f"blob:{info.digest}", "fetched_as"))
                store.audit(conn, "demo.ingest", f"blob:{info.digest}", {"source": source, "bytes": info.size})
            add_edges(conn, edges)
        say(
            f"2. Stored {report.sources} documents as {report.blobs_stored} content-addressed blobs "
            f"({report.duplicates} exact duplicate(s) stored once)"
        )
        report.curation = _curate(report.workspace)
        steps = report.curation.steps
        dropped = ", ".join(f"{r}={n}" for st in steps.values() for r, n in sorted(st.dropped.items()))
        found = ", ".join(f"{k.removeprefix('found.')}={n}" for k, n in sorted(steps["pii"].counters.items()))
        say(
            f"3. Curated {report.curation.records_read} records into {report.curation.records_out} "
            f"(dropped: {dropped}; redacted: {found}) → {report.workspace / 'curated' / 'data'}"
        )
        with store.db.read() as conn:
            for _uri, text in SAMPLE_DOCUMENTS[:1]:
                blob = f"blob:{sha256_hex(text)}"
                report.provenance[blob] = walk(conn, blob, "upstream")
            report.audit = verify(conn)
        for blob, hits in report.provenance.items():
            say(f"4. Provenance of {blob[:17]}…: {len(hits)} sources ({', '.join(h.node for h in hits)})")
        say(f"5. Audit chain verified: {report.audit.checked} events, intact={report.audit.ok}")
        example = next(iter(report.provenance))
        say(f"   Explore: keel -w {report.workspace} lineage show {example} --up")
        say(f"            keel -w {report.workspace} audit log")
    finally:
        store.close()
    return report


def _curate(workspace: Path) -> Any:
    from keel.data import LocalEngine, load_recipe  # the data stack loads only when the demo runs

    raw = workspace / "raw"
    raw.mkdir(exist_ok=True)
    with (raw / "documents.jsonl").open("w", encoding="utf-8") as out:
        for uri, text in SAMPLE_DOCUMENTS:
            out.write(json.dumps({"text": text, "url": uri}) + "\n")
    (workspace / "recipe.yaml").write_text(DEMO_RECIPE, encoding="utf-8")
    return LocalEngine().run(load_recipe(workspace / "recipe.yaml"))
