"""SIGKILL `keel curate run --workers 2` at random moments: resumed runs quarantine repeated ids as a clean run does.

Repeats lie within files and across them, so kills land in the workers' reads, in the parent's pass over the
read shards that sets cross-file repeats aside, and in the stages after it. Each killed run is resumed by the
next; the last one is let finish, and its output files and quarantine must be byte-identical to a clean run's.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.sigkill import child_env, run_and_kill

KILLS = 8
SEED = 20261207


def _corpus(raw: Path) -> None:
    raw.mkdir()
    for f in range(3):
        with (raw / f"part{f}.jsonl").open("w") as out:
            for i in range(8_000):
                # ids repeat within a file (every 10th line) and across files (part1 and part2 reuse part0's)
                n = i - (i % 10 == 9) if f == 0 else (i if i % 7 else 100_000 * f + i)
                out.write(json.dumps({"id": f"r{n}", "text": f"file {f} line {i} says " + "words " * (i % 40)}) + "\n")


def _digests(out: Path) -> dict[str, str]:
    files = [*sorted((out / "data").glob("*.parquet")), out / "quarantine.jsonl"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow
def test_sigkilled_runs_resume_to_the_same_duplicate_quarantine(tmp_path: Path) -> None:
    _corpus(tmp_path / "raw")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"inputs:\n  - path: {tmp_path / 'raw'}/*.jsonl\n    id_field: id\noutput: {tmp_path / 'out'}\n"
        "shard_size: 2000\nsteps:\n  - normalize: {}\n  - exact_dedup: {}\n"
    )
    run = [sys.executable, "-m", "keel", "curate", "run", str(recipe), "--no-commit", "--json", "--workers", "2"]
    started = time.monotonic()
    clean = subprocess.run(run, capture_output=True, text=True, env=child_env(), timeout=600)
    full = time.monotonic() - started
    assert clean.returncode == 0, clean.stderr
    expected, report = _digests(tmp_path / "out"), json.loads(clean.stdout)
    assert report["quarantined"]["duplicate_id"] > 0

    shutil.rmtree(tmp_path / "out")
    rng = random.Random(SEED)
    codes = []
    for _ in range(KILLS):
        codes.append(run_and_kill(run, rng.uniform(0.1 * full, 0.9 * full)))
        if codes[-1] == 0:  # it finished: start the next one from nothing, so kills land mid-run again
            shutil.rmtree(tmp_path / "out")
    assert all(code in (0, -signal.SIGKILL) for code in codes), codes
    assert any(code == -signal.SIGKILL for code in codes), codes
    resumed = subprocess.run(run, capture_output=True, text=True, env=child_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(resumed.stdout)
    assert again["quarantined"] == report["quarantined"] and again["records_read"] == report["records_read"]
    assert _digests(tmp_path / "out") == expected
