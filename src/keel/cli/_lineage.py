"""`keel lineage …`: walk the lineage graph from a node, or find the path between two."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from keel.cli._context import console, get_store, print_json
from keel.cli._render import lineage_tree
from keel.store import path_between, walk

__all__ = ["lineage_app"]

lineage_app = typer.Typer(
    help="The lineage graph: where everything came from and what it went into.", no_args_is_help=True
)


@lineage_app.command("show")
def show(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="A node id such as dataset-version:<sha256> or run:<ulid>.")],
    up: Annotated[bool, typer.Option("--up", help="Only what NODE came from.")] = False,
    down: Annotated[bool, typer.Option("--down", help="Only what was made from NODE.")] = False,
    depth: Annotated[int, typer.Option(min=1, max=100, help="How many edges to follow.")] = 10,
    limit: Annotated[int, typer.Option(min=1, help="The most nodes to list per direction.")] = 1000,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show what NODE came from (upstream) and what was made from it (downstream)."""
    directions = [d for d, wanted in (("upstream", up), ("downstream", down)) if wanted] or ["upstream", "downstream"]
    store = get_store(ctx)
    with store.db.read() as conn:
        found = {d: walk(conn, node, d, depth=depth, limit=limit) for d in directions}  # type: ignore[arg-type]
    if json_output:
        print_json(
            {
                "node": node,
                "depth": depth,
                **{
                    d: [{"node": h.node, "depth": h.depth, "via": h.via, "kind": h.edge_kind} for h in hits]
                    for d, hits in found.items()
                },
            }
        )
        return
    for direction, hits in found.items():
        if not hits:
            console().print(f"[dim]nothing {direction} of {node} within {depth} edges[/dim]")
            continue
        label = f"[bold]{escape(node)}[/bold] [dim]{direction}, {len(hits)} node(s)[/dim]"
        console().print(lineage_tree(label, [], hits))  # hits one edge away came via `node`: the tree's root


@lineage_app.command("path")
def path(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The node to start from, e.g. a trace.")],
    target: Annotated[str, typer.Argument(help="The node to reach, e.g. a source record.")],
    max_depth: Annotated[int, typer.Option(min=1, max=100, help="The longest path to look for.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show the shortest chain of lineage edges joining SOURCE and TARGET (exit 1 if none)."""
    store = get_store(ctx)
    with store.db.read() as conn:
        found = path_between(conn, source, target, max_depth=max_depth)
    if json_output:
        print_json(
            None
            if found is None
            else {"nodes": list(found.nodes), "kinds": list(found.kinds), "direction": found.direction}
        )
    elif found is not None:
        console().print(found.nodes[0])
        for kind, node in zip(found.kinds, found.nodes[1:], strict=True):
            console().print(f"  └─ {kind} → {node}")
    else:
        console().print(f"No lineage path joins {source} and {target} within {max_depth} edges.")
    if found is None:
        raise typer.Exit(1)
