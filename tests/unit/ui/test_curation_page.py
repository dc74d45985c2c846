"""The curation report page: a real curation run's report.json, reached from the dataset version it produced."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from keel.curate import curate, load_recipe
from keel.store import Store

from .conftest import Workspace, build_workspace
from .test_console import signed_in

pytest.importorskip("fastapi")

RECIPE = """inputs:
  - path: raw/*.jsonl
output: out
steps:
  - normalize: {}
  - quality: {}
  - exact_dedup: {}
  - near_dedup: {threshold: 0.8}
  - pii: {}
"""


def _corpus(root: Path) -> None:
    """Thirty documents, two exact copies, three near copies, two with PII, one too short."""
    rng = random.Random(5)
    stop = "the of and to a in is that for with as was on be by this are from at have".split()
    vocab = [f"{rng.choice('bcdfgklmnprst')}{rng.choice('aeiou')}{rng.choice('nrstl')}{i}" for i in range(400)]

    def sentence() -> str:  # prose-like: the quality step keeps it
        return " ".join(rng.choice(stop) if i % 2 else rng.choice(vocab) for i in range(10)).capitalize() + "."

    docs = [" ".join(sentence() for _ in range(12)) for _ in range(30)]
    docs[4] += " Mail jane.doe@example.com or call +1 415 555 0134."
    docs[5] += " Reach bob@example.org today."
    near = []
    for k, i in enumerate((1, 2, 3)):
        words = docs[i].split()
        words[rng.randrange(len(words))] = f"changed{k}"
        near.append(" ".join(words))
    texts = [*docs, docs[10], docs[11].upper(), *near, "too short"]
    (root / "raw").mkdir()
    (root / "raw" / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def test_curation_page_from_the_dataset_version(store: Store, tmp_path: Path) -> None:
    ws: Workspace = build_workspace(store, tmp_path)
    work = tmp_path / "curation"
    work.mkdir()
    _corpus(work)
    (work / "r.yaml").write_text(RECIPE)
    result = curate(store, load_recipe(work / "r.yaml"), dataset="docs")
    report = result.report.to_json()
    with signed_in(ws, ws.admin_key) as admin:
        version_page = admin.get(f"/datasets/docs/v{result.version.version}").text
        link = re.search(r'id="curation-link" href="([^"]+)"', version_page)
        assert link is not None and link.group(1) == f"/runs/{result.run_id}/curation"
        page = admin.get(link.group(1))
        assert page.status_code == 200
        html = page.text
        assert f"{report['records_out']} kept of {report['records_read']} read" in html
        # drops by reason, summed over steps, as the report records them
        reasons = dict(re.findall(r"<tr><td>([a-z_]+)</td><td>(\d+)</td></tr>", html.split('id="drops-by-reason"')[1]
                                  .split("</table>")[0]))  # fmt: skip
        expected: dict[str, int] = {}
        for stats in report["steps"].values():
            for reason, n in stats["dropped"].items():
                expected[reason] = expected.get(reason, 0) + n
        assert {k: int(v) for k, v in reasons.items()} == expected
        assert expected.get("exact_duplicate") == 2 and expected.get("near_duplicate") == 3
        # PII spans found, by type
        pii_table = html.split('id="pii"')[1].split("</table>")[0]
        counters = report["steps"]["pii"]["counters"]
        assert counters.get("found.email") == 2
        for key, n in counters.items():
            if key.startswith("found."):
                assert f"<td>{key.removeprefix('found.')}</td><td>{n}</td>" in pii_table
        # the near-duplicate similarity histogram, one row per bin of report.json
        histogram = report["global"]["near_dedup"]["dropped_to_kept"]["histogram"]
        assert sum(b[2] for b in histogram) == 3
        assert html.count("<meter") == len(histogram)
        assert f"{report['global']['near_dedup']['duplicates']} dropped in" in html
        # the run page links to it too; a run that is not a curation has no such page
        assert f'href="/runs/{result.run_id}/curation"' in admin.get(f"/runs/{result.run_id}").text
        other = admin.get(f"/runs/{ws.run_ids[0]}/curation")
        assert other.status_code == 404 and "not a curation run" in other.text
