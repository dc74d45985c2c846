"""`keel init`, `keel status` and `keel db …`: create a workspace and report on its stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.store import init_workspace

__all__ = ["db_app", "init", "status"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def init(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Where to create the workspace.")] = Path("."),
    json_output: JsonOption = False,
) -> None:
    """Create a workspace: keel.yaml, the .keel/ state folder and the metadata database."""
    store = init_workspace(directory)
    ctx.find_root().obj.store = store
    report = store.status()
    if json_output:
        print_json(report)
        return
    console().print(f"Created Keel workspace in [bold]{report['workspace']}[/bold]")
    console().print(f"  database   {report['database']['url']}  (schema {report['database']['schema_revision']})")
    console().print(f"  blobs      {report['blob_store']['url']}")
    console().print("Next: [bold]keel status[/bold]")


def status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show the workspace, its database and blob store, the schema revision and object counts."""
    report = get_store(ctx).status()
    if json_output:
        print_json(report)
        return
    db = report["database"]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("workspace", report["workspace"])
    table.add_row("database", f"{db['url']}  [dim]({db['source']})[/dim]")
    revision = db["schema_revision"]
    behind = "" if revision == db["schema_head"] else f"  [yellow](head is {db['schema_head']})[/yellow]"
    table.add_row("schema", f"{revision}{behind}")
    table.add_row("blob store", f"{report['blob_store']['url']}  [dim]({report['blob_store']['source']})[/dim]")
    table.add_row("actor", report["actor"])
    table.add_row("keel", report["keel_version"])
    console().print(table)
    counts = Table("table", "rows", title="objects", title_justify="left")
    for name, count in report["counts"].items():
        counts.add_row(name, f"{count:,}")
    console().print(counts)


db_app = typer.Typer(help="The metadata database's schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Apply pending schema migrations (opening a workspace also does this)."""
    store = get_store(ctx, upgrade=False)
    before = store.db.revision()
    ran = store.upgrade_schema()  # as opening the workspace would: a chain made before audit keys is sealed
    after = store.db.revision()
    if json_output:
        print_json({"before": before, "after": after, "migrated": ran})
    elif ran:
        console().print(f"Upgraded the schema from {before or 'empty'} to {after}.")
    else:
        console().print(f"The schema is already at the newest revision, {after}.")


@db_app.command("current")
def db_current(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show the schema revision of the database and the newest this Keel knows."""
    store = get_store(ctx, upgrade=False)
    report = {"revision": store.db.revision(), "head": store.db.head()}
    if json_output:
        print_json(report)
    else:
        console().print(f"revision {report['revision'] or '(empty)'}, newest known {report['head']}")
