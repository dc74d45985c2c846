"""The local engine's work folder is data, verified on resume, locked per run; its workers die with it."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError
from keel.curate import LocalEngine, load_recipe
from keel.curate._process import lock_output
from keel.curate._workfiles import decode, encode

STEPS = "  - normalize: {}\n  - exact_dedup: {}\n  - length: {min_chars: 5}\n  - near_dedup: {threshold: 0.8}\n"


def _setup(root: Path, docs: int = 40, shard_size: int = 8, steps: str = STEPS) -> Path:
    (root / "raw").mkdir()
    lines = [
        json.dumps({"text": f"Ticket {i}: the anvil number {i * 7} arrived dented on a Tuesday."}) for i in range(docs)
    ]
    (root / "raw" / "t.jsonl").write_text("\n".join([*lines, lines[3]]) + "\n")
    recipe = root / "recipe.yaml"
    recipe.write_text(f"inputs:\n  - path: raw/*.jsonl\noutput: out\nshard_size: {shard_size}\nsteps:\n{steps}")
    return recipe


def _outputs(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "data").glob("*.parquet"))}


class _Payload:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def test_work_files_round_trip_as_data_and_refuse_pickles(tmp_path: Path) -> None:
    value = {"ids": ["a", "b"], "sig": np.arange(6, dtype=np.uint32).reshape(2, 3), "drop": {3, 1}, 7: ("x", None)}
    back = decode(encode(value))
    assert back["ids"] == ["a", "b"] and back["drop"] == {1, 3} and back[7] == ("x", None)
    assert back["sig"].dtype == np.uint32 and back["sig"].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(InputError, match="expected a Keel work file"):
        decode(pickle.dumps(_Payload(tmp_path / "ran")))
    with pytest.raises(InputError, match="plain data"):
        encode({"x": _Payload(tmp_path / "ran")})
    assert not (tmp_path / "ran").exists()


def test_a_crafted_pickle_in_the_work_folder_is_never_executed(tmp_path: Path) -> None:
    recipe = load_recipe(_setup(tmp_path))
    LocalEngine().run(recipe)
    expected = _outputs(tmp_path / "out")
    work = next(p for p in (tmp_path / "out" / ".keel-work").iterdir() if p.is_dir())
    proof = tmp_path / "pickle-ran"
    crafted = pickle.dumps(_Payload(proof))
    observations = sorted(work.glob("stage*/*.observation.*"))
    decisions = sorted((work / "decisions").iterdir())
    assert observations and decisions
    for path in [*observations, *decisions]:
        path.write_bytes(crafted)
        path.with_suffix(".pkl").write_bytes(crafted)  # where the old layout kept them
    again = LocalEngine().run(recipe)
    assert not proof.exists()
    assert again.recomputed_shards == len(observations) and any("re-computed" in w for w in again.warnings)
    assert _outputs(tmp_path / "out") == expected


def test_a_tampered_work_shard_is_recomputed_not_trusted(tmp_path: Path) -> None:
    recipe = load_recipe(_setup(tmp_path))
    first = LocalEngine().run(recipe)
    expected = _outputs(tmp_path / "out")
    work = next(p for p in (tmp_path / "out" / ".keel-work").iterdir() if p.is_dir())
    # A read shard replaced by another (valid) shard, and a stage output replaced by a valid but different one.
    read = sorted((work / "read").glob("*.parquet"))
    read[0].write_bytes(read[1].read_bytes())
    stage = sorted((work / "stage1").glob("*.parquet"))
    stage[2].write_bytes(stage[3].read_bytes())
    # A marker pointing its shard list outside the work folder.
    marker = next((work / "read").glob("*.done.json"))
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "shards": ["../../../../etc/passwd"]}))
    again = LocalEngine().run(recipe)
    assert again.recomputed_shards >= 2 and again.records_out == first.records_out
    assert _outputs(tmp_path / "out") == expected


def test_a_second_run_on_the_same_output_folder_is_refused(tmp_path: Path) -> None:
    recipe_path = _setup(tmp_path)
    held = lock_output(tmp_path / "out")  # another run, as far as the lock can tell
    try:
        with pytest.raises(InputError, match="another curation run holds"):
            LocalEngine().run(load_recipe(recipe_path))
        result = CliRunner().invoke(app, ["curate", "run", str(recipe_path), "--no-commit"])
        assert result.exit_code == 2 and "another curation run holds" in result.output
        assert "Traceback" not in result.output and not (tmp_path / "out" / "report.json").exists()
    finally:
        held.release()
    assert LocalEngine().run(load_recipe(recipe_path)).records_out > 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status waits to be collected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    steps = "  - normalize: {}\n  - quality: {}\n  - exact_dedup: {}\n  - quality: {}\n"
    recipe = _setup(tmp_path, docs=6000, shard_size=100, steps=steps)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [sys.executable, "-c", "from keel.cli import main; main()"]
    parent = subprocess.Popen([*cli, "curate", "run", str(recipe), "--workers", "2", "--no-commit"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "out" / ".keel-work").glob("*/read/*.done.json")):  # workers are at work
            assert parent.poll() is None and time.monotonic() < deadline, "the run ended before workers were seen"
            time.sleep(0.05)
        workers = _children(parent.pid)
        assert len(workers) >= 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [w for w in workers if _alive(w)] == []


def test_a_process_that_blocks_pandas_keeps_pyarrow_working() -> None:
    probe = (
        "import json, sys\n"
        "import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq\n"
        "from keel.curate._process import block_pandas\n"
        "first, again = block_pandas(), block_pandas()\n"
        "table = pa.table({'n': pa.array([1, None, 3]), 's': pa.array(['a', 'b', None])})\n"
        "sink = pa.BufferOutputStream(); pq.write_table(table, sink)\n"
        "back = pq.read_table(pa.BufferReader(sink.getvalue()))\n"
        "total = int(pc.sum(back['n']).as_py()) + int(np.asarray(back['n'].fill_null(0)).sum())\n"
        "try:\n    import pandas\n    refused = ''\nexcept ModuleNotFoundError as exc:\n    refused = str(exc)\n"
        "print(json.dumps([first, again, back.equals(table), total, 'pandas' in sys.modules, refused]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    first, again, equal, total, loaded, refused = json.loads(done.stdout)
    assert (first, again, equal, total, loaded) == (True, True, True, 8, False)
    assert "block_pandas" in refused  # the error names where the block comes from


def test_blocking_pandas_after_it_was_imported_does_nothing() -> None:
    probe = "import pandas, sys\nfrom keel.curate._process import block_pandas\nprint(block_pandas())"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]


def test_the_command_without_pandas_writes_the_bytes_the_library_writes(tmp_path: Path) -> None:
    """`keel curate run` (its own process: pandas blocked, in its workers too) and `LocalEngine` in this one."""
    recipe = _setup(tmp_path, docs=60, shard_size=16)
    LocalEngine(workers=1).run(load_recipe(recipe))
    library = _outputs(tmp_path / "out")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [sys.executable, "-c", "from keel.cli import main; main()", "curate", "run", str(recipe), "--no-commit"]
    for workers in ("1", "2"):
        (tmp_path / "out").rename(tmp_path / f"out-before-{workers}")
        subprocess.run([*cli, "--workers", workers, "--json"], env=env, capture_output=True, check=True)
        assert _outputs(tmp_path / "out") == library
