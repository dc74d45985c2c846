from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import ConfigError, InputError
from keel.curate import LocalEngine, RayEngine, curate, load_recipe
from keel.data import get_version, load_version
from keel.store import Store, init_workspace

ray = pytest.importorskip("ray")

RECIPE = """inputs:
  - path: raw/*.jsonl
output: {output}
shard_size: 16
keep_dropped: true
steps:
  - normalize: {{}}
  - quality: {{}}
  - exact_dedup: {{}}
  - near_dedup: {{threshold: 0.8}}
  - pii: {{}}
"""


STOP = "the of and to a in is that for with as was on be by this are from at have".split()


def _doc(rng: random.Random, vocab: list[str], n: int) -> str:
    sentences = []
    for _ in range(n // 10):
        words = [rng.choice(STOP) if i % 2 else rng.choice(vocab) for i in range(10)]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def _corpus(root: Path, mass: int = 0) -> dict[str, int]:
    """Two JSONL files: originals, exact copies (case and spacing changed), near copies, PII, junk and a bad line.

    `mass` more near copies of one document, of different lengths, make band groups past SMALL_GROUP members.
    """
    rng = random.Random(7)
    vocab = [f"{rng.choice('bcdfgklmnprst')}{rng.choice('aeiou')}{rng.choice('nrstl')}{i}" for i in range(400)]
    docs = [_doc(rng, vocab, 120) for _ in range(50)]
    docs[3] += " Write to jane.doe@example.com or call +1 415 555 0134 for details."
    copies = [docs[i].upper().replace(" ", "  ", 3) for i in (1, 7, 30)]  # exact after normalising
    near = []
    for k, i in enumerate((2, 9, 9, 41)):  # doc 9 and its two copies make a cluster of three
        words = docs[i].split()
        words[rng.randrange(len(words))] = f"changed{k}"  # ~1% of words: far above Jaccard 0.8
        near.append(" ".join(words))
    for k in range(mass):
        words = docs[12].split()
        words[rng.randrange(len(words))] = f"mass{k}"
        near.append(" ".join(words) + f" Copy {k}." * (k % 3))
    junk = ["too short", "!!! ??? ... ###"]
    everything = docs + copies + near + junk
    rng.shuffle(everything)
    raw = root / "raw"
    raw.mkdir()
    half = len(everything) // 2
    for name, part in (("a.jsonl", everything[:half]), ("b.jsonl", everything[half:])):
        with (raw / name).open("w") as f:
            for text in part:
                f.write(json.dumps({"text": text}) + "\n")
    with (raw / "b.jsonl").open("a") as f:
        f.write("{not json\n")
    return {"copies": len(copies), "near": len(near)}


def _steps(report: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in stats.items() if k != "seconds"} for name, stats in report["steps"].items()}


def _output(out: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((out / "data").glob("part-*.parquet")))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.usefixtures("ray_runtime")  # the module's: tests/unit/curate/conftest.py
@pytest.mark.parametrize(
    "variant", ["input order", "keep longest, 40 copies of one text", "read as through Ray Client"]
)
def test_local_and_ray_engines_keep_the_same_records_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    if variant == "read as through Ray Client":  # which has no streaming tasks: files are read by plain tasks
        from keel.curate.ray import _engine as _ray_engine

        monkeypatch.setattr(_ray_engine, "_ray_client", lambda: True)
    mass = 40 if variant.startswith("keep longest") else 0
    expected = _corpus(tmp_path, mass)
    recipe = RECIPE.replace("{{threshold: 0.8}}", "{{threshold: 0.8, keep: longest}}") if mass else RECIPE
    for name in ("local", "ray"):
        (tmp_path / f"{name}.yaml").write_text(recipe.format(output=f"out-{name}"))
    local = LocalEngine().run(load_recipe(tmp_path / "local.yaml"))
    assert ray.is_initialized()
    ray_report = RayEngine(num_cpus=2).run(load_recipe(tmp_path / "ray.yaml"))
    # It ran on the module's runtime and left it running: an engine stops only a runtime it started
    # (test_duplicate_ids.py's "streaming reads" case starts its own and checks that it is stopped).
    assert ray.is_initialized()

    a = json.loads((tmp_path / "out-local" / "report.json").read_text())
    b = json.loads((tmp_path / "out-ray" / "report.json").read_text())
    assert set(a) == set(b)
    assert _steps(a) == _steps(b)
    assert a["global"] == b["global"]  # duplicates, clusters, candidate and verified pairs, examples, S-curve
    assert (a["records_read"], a["quarantined"], a["records_out"]) == (
        b["records_read"],
        b["quarantined"],
        b["records_out"],
    )
    assert a["steps"]["exact_dedup"]["dropped"] == {"exact_duplicate": expected["copies"]}
    if not mass:
        assert a["steps"]["near_dedup"]["dropped"] == {"near_duplicate": expected["near"]}
        assert a["global"]["near_dedup"]["cluster_sizes"] == {"2": 2, "3": 1}
    else:  # how many of the 40 go depends on which is longest: the same on both engines (the report is equal)
        assert a["steps"]["near_dedup"]["dropped"]["near_duplicate"] > 30
        assert a["global"]["near_dedup"]["keep"] == {"policy": "longest", "records_without_value": 0}
    assert a["global"]["near_dedup"]["dropped_to_kept"]["quantiles"]["min"] >= 0.8
    assert a["steps"]["pii"]["records_in"] > 0 and a["quarantined"] == {"invalid_json": 1}
    assert ray_report.records_out == local.records_out
    assert (b["shards"], b["bytes_out"]) == (a["shards"], a["bytes_out"])  # one part per shard, the same bytes

    left, right = _output(tmp_path / "out-local"), _output(tmp_path / "out-ray")
    assert right.column("id").to_pylist() == left.column("id").to_pylist()  # same records, same order
    assert right.equals(left)  # and the same columns and values: texts redacted alike, dup_cluster alike
    assert "<EMAIL>" in " ".join(right.column("text").to_pylist())
    for step in ("exact_dedup", "near_dedup"):
        dropped = [pq.read_table(p) for p in (tmp_path / "out-ray" / "dropped" / step).glob("*.parquet")]
        assert sum(t.num_rows for t in dropped) == sum(a["steps"][step]["dropped"].values())
    names = {engine: sorted(p.relative_to(tmp_path / f"out-{engine}").as_posix()
                            for p in (tmp_path / f"out-{engine}" / "dropped").rglob("*.parquet"))
             for engine in ("local", "ray")}  # fmt: skip
    assert names["ray"] == names["local"] and names["ray"]  # every step's dropped records, shard by shard
    assert (tmp_path / "out-ray" / "quarantine.jsonl").read_text() == (
        tmp_path / "out-local" / "quarantine.jsonl"
    ).read_text()
    assert not list((tmp_path / "out-ray" / ".keel-work").glob("ray-*"))  # the tasks' counts were cleaned up


def test_what_the_ray_engine_cannot_distribute_is_refused_before_ray_starts(tmp_path: Path) -> None:
    _corpus(tmp_path)
    (tmp_path / "r.yaml").write_text(
        RECIPE.format(output="out").replace("threshold: 0.8", "threshold: 0.8, verification: exact")
    )
    with pytest.raises(ConfigError, match="--engine local"):
        RayEngine(num_cpus=1).run(load_recipe(tmp_path / "r.yaml"))
    assert not (tmp_path / "out").exists()


def test_importing_keel_data_does_not_import_ray() -> None:
    code = "import sys, keel.data; assert keel.data.RayEngine and 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("ray_runtime")
def test_the_cli_runs_a_recipe_on_ray_and_reports_bad_input_as_a_user_error(tmp_path: Path) -> None:
    _corpus(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(output="out"))
    result = CliRunner().invoke(app, ["curate", "run", str(recipe), "--engine", "ray", "--no-commit", "--json"])
    assert result.exit_code == 0, result.output
    # Ray Data may log its own lines around the report under pytest's log capture: decode the JSON document.
    report, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index('{\n  "') :])
    assert report["records_read"] == 59 and report["quarantined"] == {"invalid_json": 1}
    assert report["records_out"] == 50 and report["shards"] and ray.is_initialized()
    strict = CliRunner().invoke(app, ["curate", "run", str(recipe), "--engine", "ray", "--no-commit", "--strict"])
    assert strict.exit_code == 2 and "InputError: bad input (--strict)" in strict.output
    wrong = CliRunner().invoke(app, ["curate", "run", str(recipe), "--engine", "spark", "--no-commit"])
    assert wrong.exit_code == 2 and "expected --engine local or ray" in wrong.output


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("ray_runtime")
def test_curate_on_ray_records_the_run_and_commits_the_version(store: Store, tmp_path: Path) -> None:
    _corpus(tmp_path)
    (tmp_path / "r.yaml").write_text(RECIPE.format(output="out"))
    result = curate(store, load_recipe(tmp_path / "r.yaml"), dataset="docs", engine="ray")
    assert result.created and result.version.num_rows == result.report.records_out == 50
    assert get_version(store, "docs").producer["report"]["global"]["exact_dedup"] == {"duplicates": 3}
    with pytest.raises(InputError, match="engine 'local' or 'ray'"):
        curate(store, load_recipe(tmp_path / "r.yaml"), dataset="docs", engine="spark")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("ray_runtime")
def test_curate_on_ray_into_a_workspace_whose_blob_store_is_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_blob_url: str, s3_server: dict[str, Any]
) -> None:
    import boto3

    monkeypatch.setenv("KEEL_BLOB_URL", s3_blob_url)
    monkeypatch.setenv("KEEL_BLOB_OPTIONS", json.dumps(s3_server))
    store = init_workspace(tmp_path / "ws")
    try:
        _corpus(tmp_path)
        (tmp_path / "r.yaml").write_text(RECIPE.format(output="out"))
        result = curate(store, load_recipe(tmp_path / "r.yaml"), dataset="docs", engine="ray")

        bucket, prefix = s3_blob_url.removeprefix("s3://").split("/", 1)
        client = boto3.client("s3", endpoint_url=s3_server["endpoint_url"], aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")  # fmt: skip
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        objects = {item["Key"].rsplit("/", 1)[-1] for item in listed.get("Contents", [])}
        shards = result.version.shards
        assert shards and {shard.digest for shard in shards} <= objects  # the version's shards are S3 objects
        loaded = load_version(store, "docs@v1")
        assert loaded.column("id").to_pylist() == _output(tmp_path / "out").column("id").to_pylist()
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("ray_runtime")
def test_keel_curate_on_ray_prints_its_progress_without_ray_datas_per_dataset_lines(tmp_path: Path) -> None:
    _corpus(tmp_path)
    (tmp_path / "r.yaml").write_text(RECIPE.format(output="out"))
    # The command joins the module's runtime through --address (a cluster's address) instead of starting its own.
    address = ray.get_runtime_context().gcs_address
    done = subprocess.run(
        [sys.executable, "-m", "keel", "curate", "run", "r.yaml", "--engine", "ray", "--address", address,
         "--no-commit"],
        cwd=tmp_path, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert "wrote 50 in" in printed  # the run's own summary
    # Ray Data logs three lines per dataset it executes (a dozen per run) and a notice about progress bars
    # the engine turned off; the run shows its own progress instead.
    assert "Starting execution of Dataset" not in printed and "Progress bars disabled" not in printed
