"""`keel monitor cost`: self-hosted cost from traces (busy time × hardware rate) against API list prices."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.ids import new_ulid
from keel.monitor import Trace, TraceWriter, cost_report, load_prices
from keel.monitor._cost import _busy_seconds
from keel.registry import register_model
from keel.serve import create_deployment
from keel.store import Store

runner = CliRunner()


def _traffic(store: Store, tmp_path: Path) -> None:
    """Three answered requests (two overlapping), one cache hit and one error, one minute ago."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    register_model(store, "chat", tmp_path / "m")
    create_deployment(store, "chat", "chat@v1", route={"upstream": "http://127.0.0.1:9/v1"})
    end = store.clock() - timedelta(minutes=1)
    rows = [  # (seconds before `end` the request finished, latency s, tokens in, out, cache hit, status)
        (0, 2.0, 1000, 500, False, 200),
        (1, 2.0, 1000, 500, False, 200),  # overlaps the first: [end-3, end-1] and [end-2, end]
        (10, 1.0, 2000, 1000, False, 200),
        (20, 0.001, 1000, 500, True, 200),
        (30, 0.5, 10, 0, False, 500),
    ]
    traces = [Trace(id=new_ulid(), at=end - timedelta(seconds=ago), deployment="chat", operation="chat", status=status,
                    latency_ms=latency * 1000, model_version="chat@v1", tokens_in=tin, tokens_out=tout,
                    cache_hit=hit) for ago, latency, tin, tout, hit, status in rows]  # fmt: skip
    TraceWriter(store).write(traces)


def test_cost_from_traces_against_api_prices(store: Store, tmp_path: Path) -> None:
    _traffic(store, tmp_path)
    now = store.clock()
    report = cost_report(store, "chat", api="gpt-4o-mini", since=now - timedelta(hours=1), until=now,
                         hardware_cost_per_hour=3.6)  # fmt: skip
    assert (report.requests, report.cache_hits) == (4, 1)
    assert (report.tokens_in, report.tokens_out) == (4000, 2000)
    assert report.busy_seconds == pytest.approx(4.0, abs=1e-3)  # 3 s of overlapping requests + 1 s
    assert report.tokens_per_second == pytest.approx(1500, rel=1e-3)
    assert report.self_hosted_cost == pytest.approx(4.0 / 3600 * 3.6, rel=1e-3)  # = tokens × rate ÷ throughput
    assert report.api_cost == pytest.approx((4000 * 0.15 + 2000 * 0.60) / 1e6)
    assert report.provisioned_cost == pytest.approx(3.6)
    assert report.ratio == pytest.approx(report.api_cost / report.self_hosted_cost)


def test_workspace_price_file_overrides_and_cli(store: Store, tmp_path: Path) -> None:
    _traffic(store, tmp_path)
    workspace = store.settings.workspace
    assert load_prices(workspace).source == "shipped" and load_prices().as_of
    (workspace / "api_prices.yaml").write_text(
        "as_of: '2026-12-01'\napis:\n  gpt-4o-mini: {input_per_million: 1.0, output_per_million: 2.0}\n"
        "  house-llm: {input_per_million: 0.5, output_per_million: 0.5}\nhardware: {cost_per_hour: 1.8}\n"
    )
    table = load_prices(workspace)
    assert table.apis["gpt-4o-mini"].output_per_million == 2.0 and "claude-sonnet-4" in table.apis
    out = runner.invoke(
        app, ["-w", str(workspace), "monitor", "cost", "chat", "--compare-api", "gpt-4o-mini", "--json"]
    )
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["prices_as_of"] == "2026-12-01" and got["hardware_cost_per_hour"] == 1.8
    assert got["api_cost"] == pytest.approx((4000 * 1.0 + 2000 * 2.0) / 1e6)
    text = runner.invoke(app, ["-w", str(workspace), "monitor", "cost", "chat", "--compare-api", "house-llm"])
    assert text.exit_code == 0 and "house-llm" in text.output and "busy" in text.output


def test_cost_refuses_bad_input_in_one_line(store: Store, tmp_path: Path) -> None:
    _traffic(store, tmp_path)
    ws = str(store.settings.workspace)
    unknown = runner.invoke(
        app, ["-w", ws, "monitor", "cost", "chat", "--compare-api", "gpt-9", "--hardware-cost-per-hour", "1"]
    )
    assert unknown.exit_code == 2 and "expected an API named in the price table" in unknown.output
    assert "Traceback" not in unknown.output
    no_rate = runner.invoke(app, ["-w", ws, "monitor", "cost", "chat"])
    assert no_rate.exit_code == 2 and "cost per hour" in no_rate.output
    missing = runner.invoke(app, ["-w", ws, "monitor", "cost", "nope", "--hardware-cost-per-hour", "1"])
    assert missing.exit_code == 2 and "no deployment named 'nope'" in missing.output
    (store.settings.workspace / "api_prices.yaml").write_text("apis: [1, 2]\n")
    broken = runner.invoke(app, ["-w", ws, "monitor", "cost", "chat", "--hardware-cost-per-hour", "1"])
    assert broken.exit_code == 2 and "api_prices.yaml" in broken.output


def test_busy_time_is_the_union_of_intervals() -> None:
    assert _busy_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == 4
    assert _busy_seconds([]) == 0
