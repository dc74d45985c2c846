"""Curate into a dataset version: run a recipe as a Keel run and commit its output, with lineage.

Lineage: `source:<file>` ─used_by→ `run:<id>` ─produced→ `dataset-version:NAME@vN`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keel.core.echo import shown
from keel.core.ids import sha256_hex

if TYPE_CHECKING:
    from keel.curate import CurationReport, Progress, Recipe
    from keel.data import DatasetVersion
    from keel.store import Store

# The store and the registry (SQLAlchemy, ~0.2 CPU-s of imports) load when a run is committed, not when
# keel.curate is imported to run an engine alone.

__all__ = ["CurationResult", "curate", "source_node"]


@dataclass(frozen=True)
class CurationResult:
    """The curation report, the run that made it, and the version committed from its output."""

    report: CurationReport
    run_id: str
    version: DatasetVersion
    created: bool


def source_node(path: Path) -> str:
    """The lineage node of an input file: `source:<file URI>` (hashed if too long for a node id)."""
    return uri_node(path.resolve().as_uri())


def uri_node(uri: str) -> str:
    """The lineage node of a source by its URI, as `source_node` names files."""
    from keel.store.schema import NODE_ID_LENGTH

    node = f"source:{uri}"
    return node if len(node) <= NODE_ID_LENGTH else f"source:sha256:{sha256_hex(uri)}"


def curate(
    store: Store,
    recipe: Recipe,
    *,
    dataset: str,
    workers: int | None = None,
    strict: bool = False,
    engine: str = "local",
    address: str | None = None,
    progress: Progress | None = None,
    message: str | None = None,
) -> CurationResult:
    """Run `recipe` as a `curate` run and commit its output as the next version of `dataset`.

    Args:
        store: The workspace store.
        recipe: A loaded recipe.
        dataset: The dataset to commit the output to.
        workers: Worker processes (default 1), or the CPUs of a local Ray runtime (default: all).
        engine: `local` (a process pool) or `ray` (Ray Data; same records and report).
        address: The Ray cluster to use with `engine="ray"`; None starts a local Ray runtime.
        strict: Stop at the first bad input item instead of quarantining it.
        progress: Called with (label, done, total) as work advances.
        message: The version's message; a summary of the run by default.

    Returns:
        The report, run id and committed version.
    """
    from keel.data import commit_version
    from keel.registry import start_run

    if engine not in ("local", "ray"):
        from keel.core.errors import InputError

        raise InputError(f"expected engine 'local' or 'ray'; got {shown(engine)}")

    from keel.govern import require

    require(store, "dataset.commit", f"dataset:{dataset}")  # before the curation, not after it
    inputs = [source_node(s.path) for s in recipe.resolve_inputs()]
    recipe = recipe.with_workspace(store.settings.workspace)
    if engine == "local":
        workers = workers or 1
    params = {"recipe": recipe.model_dump(mode="json"), "workers": workers, "dataset": dataset, "strict": strict}
    if engine != "local":
        params["engine"] = engine
    with start_run("curate", params, inputs=inputs, store=store) as run:
        if engine == "ray":  # Ray Data's imports only when asked for
            from keel.curate import RayEngine

            report = RayEngine(address, num_cpus=workers).run(recipe, strict=strict, progress=progress)
        else:
            from keel.curate import LocalEngine

            report = LocalEngine(workers=workers or 1).run(recipe, strict=strict, progress=progress)
        run.log_metrics(
            {
                "records_read": report.records_read,
                "records_out": report.records_out,
                "bytes_out": report.bytes_out,
                "quarantined": sum(report.quarantined.values()),
            }
        )
        run.log_artifact(recipe.output_dir / "report.json", name="report.json")
        shards = [recipe.output_dir / "data" / name for name in report.shards]
        if not shards:
            from keel.core.errors import InputError

            raise InputError(
                f"the recipe kept no records ({report.records_read:,} read), so there is nothing to commit",
                hint="loosen the filters, or run without a workspace to inspect the report",
            )
        version, created = commit_version(
            store,
            dataset,
            shards,
            message=message or f"curated {report.records_out:,} of {report.records_read:,} records",
            producer={"command": "curate", "run": run.id, "recipe": params["recipe"], "report": report.to_json()},
            run_id=run.id,
        )
    return CurationResult(report, run.id, version, created)
