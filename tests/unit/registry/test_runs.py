from __future__ import annotations

from pathlib import Path

import pytest

from keel.core.errors import InputError, NotFoundError
from keel.registry import capture_environment, get_run, list_runs, metric_series, start_run
from keel.store import Store, events, verify, walk


def test_a_run_records_params_metrics_artifacts_env_and_lineage(store: Store, tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "weights.bin").write_bytes(b"w" * 1000)
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    dataset = "dataset-version:" + "d" * 64
    with start_run(
        "train", {"lr": 0.001, "epochs": 2, "model": {"r": 8}}, inputs=[dataset], seed=7, store=store
    ) as run:
        for step, loss in enumerate([2.5, 1.9, 1.4]):
            run.log_metrics({"loss": loss, "accuracy": 0.2 * step}, step=step)
        run.log_metric("eval_loss", 1.6)
        run.log_metric("eval_loss", 1.5)
        assert run.log_artifact(tmp_path / "ckpt") == ["ckpt/config.json", "ckpt/weights.bin"]
        run.log_output("model-version:chat@v1")
    with store.db.read() as conn:
        info = get_run(conn, run.id)
        series = metric_series(conn, run.id)
        upstream = walk(conn, run.node, "upstream")
        downstream = walk(conn, run.node, "downstream")
    assert info.status == "finished" and info.ended_at is not None and info.error is None
    assert info.params == {"lr": 0.001, "epochs": 2, "model": {"r": 8}}
    assert info.metrics == {"accuracy": 0.4, "eval_loss": 1.5, "loss": 1.4}
    assert series["loss"] == [(0, 2.5), (1, 1.9), (2, 1.4)]
    assert series["eval_loss"] == [(0, 1.6), (1, 1.5)]
    assert set(info.artifacts) == {"ckpt/config.json", "ckpt/weights.bin"}
    assert store.blobs.exists(info.artifacts["ckpt/weights.bin"])
    assert info.env["seed"] == 7 and info.env["python"] and "sqlalchemy" in info.env["packages"]
    assert [h.node for h in upstream] == [dataset]
    assert [h.node for h in downstream] == ["model-version:chat@v1"]
    with store.db.read() as conn:
        assert [e.action for e in events(conn, object_id=run.node, newest_first=False)] == ["run.start", "run.end"]
        assert verify(conn).ok


def test_a_failing_block_marks_the_run_failed_and_reraises(store: Store) -> None:
    with pytest.raises(ZeroDivisionError), start_run("train", {}, store=store) as run:
        run.log_metric("loss", 3.0)
        _ = 1 / 0
    with store.db.read() as conn:
        info = get_run(conn, run.id)
    assert info.status == "failed" and info.error == "ZeroDivisionError: division by zero"
    assert info.metrics == {"loss": 3.0}  # what was logged before the crash is kept


def test_interrupt_marks_the_run_killed(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt), start_run("eval", {}, store=store) as run:
        raise KeyboardInterrupt
    with store.db.read() as conn:
        assert get_run(conn, run.id).status == "killed"


def test_latest_metric_keeps_the_highest_step(store: Store) -> None:
    with start_run("train", {}, store=store) as run:
        run.log_metric("loss", 1.0, step=10)
        run.log_metric("loss", 9.0, step=3)  # a late write for an earlier step
        run.log_metric("loss", 0.5, step=10)  # a rewrite of the same step wins
    with store.db.read() as conn:
        assert get_run(conn, run.id).metrics == {"loss": 0.5}
        assert metric_series(conn, run.id, "loss") == {"loss": [(3, 9.0), (10, 0.5)]}


def test_list_filters_sorts_and_pages(store: Store) -> None:
    ids = {}
    for lr in (0.1, 0.01, 0.001):
        for seed in (1, 2):
            with start_run("train", {"lr": lr, "seed": seed}, store=store) as run:
                run.log_metric("loss", lr * 10 + seed)
            ids[(lr, seed)] = run.id
    with start_run("eval", {"lr": 0.1}, store=store):
        pass
    with store.db.read() as conn:
        everything = list_runs(conn, limit=100)
        assert len(everything) == 7 and everything[0].kind == "eval"  # newest first
        trains = list_runs(conn, kind="train", params={"lr": 0.01}, sort_by="loss", descending=False)
        assert [r.id for r in trains] == [ids[(0.01, 1)], ids[(0.01, 2)]]
        # losses: 1.01 (0.001, 1), 1.1 (0.01, 1), 2.0 (0.1, 1), 2.01 (0.001, 2), 2.1, 3.0
        best = list_runs(conn, sort_by="loss", descending=False, limit=2)
        assert [r.id for r in best] == [ids[(0.001, 1)], ids[(0.01, 1)]]
        page2 = list_runs(conn, sort_by="loss", descending=False, limit=2, offset=2)
        assert [r.id for r in page2] == [ids[(0.1, 1)], ids[(0.001, 2)]]
        assert best[0].metrics == {"loss": pytest.approx(1.01)}
        assert list_runs(conn, params={"lr": 0.5}) == []
        assert len(list_runs(conn, status="finished", kind="train", params={"seed": 2})) == 3


def test_lookup_by_unique_prefix_and_errors(store: Store) -> None:
    with start_run("train", {}, store=store) as run:
        pass
    with store.db.read() as conn:
        assert get_run(conn, run.id[:20].lower()).id == run.id
        with pytest.raises(NotFoundError, match="no run 'nope'"):
            get_run(conn, "nope")


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [("Train Job", {}, "run kind"), ("train", {"f": object()}, "JSON-serialisable")],
)
def test_bad_runs_are_refused_before_anything_is_written(store: Store, kind: str, params: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError, match=match), start_run(kind, params, store=store):
        pass
    assert store.db.count_rows()["runs"] == 0


def test_bad_metric_values(store: Store) -> None:
    with start_run("train", {}, store=store) as run:
        with pytest.raises(InputError, match="finite number"):
            run.log_metric("loss", float("nan"))
        with pytest.raises(InputError, match="metric name"):
            run.log_metric("", 1.0)
        with pytest.raises(InputError, match="does not exist"):
            run.log_artifact("/nonexistent/file")


def test_environment_capture_reads_git(tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=k", "-c", "user.email=k@example.invalid", "commit", "-qm", "x"],
        check=True,
    )
    env = capture_environment(cwd=tmp_path)
    assert env["git"]["dirty"] is False and len(env["git"]["commit"]) == 40
    (tmp_path / "f.txt").write_text("changed")
    assert capture_environment(cwd=tmp_path)["git"]["dirty"] is True
    assert capture_environment(cwd=Path("/"))["git"] is None


@pytest.mark.parametrize("strategy", ["filter_first", "walk_metric_index"])
def test_both_search_strategies_return_the_same_page(
    store: Store, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    import keel.registry._runs as runs_module

    monkeypatch.setattr(runs_module, "SORT_FIRST_MIN_MATCHES", 10**9 if strategy == "filter_first" else 1)
    expected = []
    for i in range(12):
        with start_run("train", {"method": "lora" if i % 3 else "full", "bs": i % 2}, store=store) as run:
            run.log_metric("f1", (i * 7) % 12 / 12)
        if i % 3 and i % 2 == 0:
            expected.append(((i * 7) % 12 / 12, run.id))
    expected.sort(reverse=True)
    with store.db.read() as conn:
        page = list_runs(conn, params={"method": "lora", "bs": 0}, sort_by="f1", limit=3)
        rest = list_runs(conn, params={"method": "lora", "bs": 0}, sort_by="f1", limit=3, offset=3)
        ascending = list_runs(conn, params={"method": "lora"}, sort_by="f1", descending=False, limit=2, kind="train")
    assert [r.id for r in page + rest] == [run_id for _, run_id in expected]
    assert [r.metrics["f1"] for r in ascending] == sorted(r.metrics["f1"] for r in ascending)


def test_keel_start_run_finds_the_workspace_from_the_working_directory(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel

    monkeypatch.chdir(workspace)
    with keel.start_run("train", {"lr": 0.1}) as run:
        run.log_metric("loss", 1.0)
    store = keel.open_store()
    with store.db.read() as conn:
        assert get_run(conn, run.id).status == "finished"
    store.close()


def test_list_runs_pages_by_keyset_in_either_order(store: Store) -> None:
    for i in range(7):
        with start_run("train", {"i": i}, store=store) as run:
            run.log_metric("loss", float(i % 3))  # ties: the run id breaks them
    for descending in (True, False):
        with store.db.read() as conn:
            whole = [r.id for r in list_runs(conn, sort_by="loss", descending=descending, limit=100)]
            paged, after = [], None
            while page := list_runs(conn, sort_by="loss", descending=descending, limit=3, after=after):
                paged += [r.id for r in page]
                after = page[-1].id
        assert paged == whole and len(whole) == 7
    with store.db.read() as conn:
        newest = [r.id for r in list_runs(conn, limit=100)]
        assert [r.id for r in list_runs(conn, limit=3, after=newest[2])] == newest[3:6]
