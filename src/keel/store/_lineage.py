"""The lineage graph: typed node ids, kinded edges, and walks done inside the database.

A node id is `<kind>:<identity>` (`dataset-version:9f2c…`, `run:01J…`, `model-version:chat@v3`);
any kind a later component adds is accepted if it is spelled like one. Edges point the way data
flows, from upstream to downstream. Walks and paths are recursive CTEs that run the same on
SQLite and PostgreSQL; the graph is never loaded into Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Integer, String, func, literal, select, true

from keel.core.clock import system_clock
from keel.core.errors import InputError, NotFoundError
from keel.store._db import insert_for
from keel.store.schema import NODE_ID_LENGTH, lineage_edges, lineage_nodes

__all__ = [
    "Direction",
    "Edge",
    "LineageHit",
    "LineagePath",
    "add_edge",
    "add_edges",
    "add_node",
    "node_id",
    "parse_node_id",
    "path_between",
    "walk",
]

Direction = Literal["upstream", "downstream"]

_KIND = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_EDGE_KIND = re.compile(r"[a-z][a-z0-9_]*")
_IDENTITY = re.compile(r"\S+")


def node_id(kind: str, identity: str) -> str:
    """Build a node id and check its shape.

    Examples:
        >>> node_id("run", "01JD3Z0000000000000000000")
        'run:01JD3Z0000000000000000000'
    """
    return _check_node_id(f"{kind}:{identity}")


def parse_node_id(text: str) -> tuple[str, str]:
    """Split a node id into (kind, identity), or raise `InputError` saying what a node id looks like.

    Examples:
        >>> parse_node_id("model-version:chat@v3")
        ('model-version', 'chat@v3')
    """
    _check_node_id(text)
    kind, _, identity = text.partition(":")
    return kind, identity


def _check_node_id(text: str) -> str:
    kind, sep, identity = text.partition(":")
    if not sep or not _KIND.fullmatch(kind) or not _IDENTITY.fullmatch(identity) or len(text) > NODE_ID_LENGTH:
        raise InputError(
            f"expected a lineage node id '<kind>:<identity>' such as 'dataset-version:<sha256>' or "
            f"'run:<ulid>' (kind in lowercase letters, digits and dashes; no spaces; at most "
            f"{NODE_ID_LENGTH} characters); got {text!r}"
        )
    return text


@dataclass(frozen=True, slots=True)
class Edge:
    """One lineage edge: data flowed from `upstream` to `downstream`, in the way `kind` says."""

    upstream: str
    downstream: str
    kind: str


@dataclass(frozen=True, slots=True)
class LineageHit:
    """A node reached by a walk: how many edges away, and the edge it was first reached through."""

    node: str
    depth: int
    via: str
    edge_kind: str


@dataclass(frozen=True, slots=True)
class LineagePath:
    """A chain of nodes from `nodes[0]` to `nodes[-1]`; `kinds[i]` joins `nodes[i]` and `nodes[i+1]`."""

    nodes: tuple[str, ...]
    kinds: tuple[str, ...]
    direction: Direction


def add_edge(conn: Connection, upstream: str, downstream: str, kind: str, *, at: datetime | None = None) -> Edge:
    """Record that data flowed from `upstream` to `downstream`; adding an existing edge is a no-op.

    Args:
        conn: A connection inside a write transaction (`Database.write()`).
        upstream: The node the data came from, e.g. a dataset version.
        downstream: The node made from it, e.g. the run that trained on it.
        kind: What the edge means, e.g. `trained_on`, `derived_from`, `produced`.
        at: When the edge was made; now by default.

    Returns:
        The edge.

    Examples:
        >>> with db.write() as conn:  # doctest: +SKIP
        ...     add_edge(conn, "dataset-version:ab12…", "run:01JD…", "trained_on")
    """
    edge = Edge(upstream, downstream, kind)
    add_edges(conn, [edge], at=at)
    return edge


def add_edges(conn: Connection, edges: Iterable[Edge], *, at: datetime | None = None) -> int:
    """Record many edges at once (creating their nodes); returns how many edges were given."""
    moment = at or system_clock()
    nodes: dict[str, str] = {}
    rows = []
    for edge in edges:
        up_kind, _ = parse_node_id(edge.upstream)
        down_kind, _ = parse_node_id(edge.downstream)
        if not _EDGE_KIND.fullmatch(edge.kind):
            raise InputError(f"expected an edge kind in lowercase snake_case such as 'trained_on'; got {edge.kind!r}")
        if edge.upstream == edge.downstream:
            raise InputError(f"a lineage edge must join two different nodes; got {edge.upstream!r} twice")
        nodes[edge.upstream] = up_kind
        nodes[edge.downstream] = down_kind
        rows.append({"upstream": edge.upstream, "downstream": edge.downstream, "kind": edge.kind, "created_at": moment})
    if not rows:
        return 0
    node_rows = [{"id": node, "kind": kind, "created_at": moment} for node, kind in nodes.items()]
    conn.execute(insert_for(conn, lineage_nodes).on_conflict_do_nothing(), node_rows)
    conn.execute(insert_for(conn, lineage_edges).on_conflict_do_nothing(), rows)
    return len(rows)


def add_node(conn: Connection, node: str, *, at: datetime | None = None) -> str:
    """Make `node` part of the graph before it has edges (a first version, a fresh upload).

    Returns:
        The node id.
    """
    kind, _ = parse_node_id(node)
    row = {"id": node, "kind": kind, "created_at": at or system_clock()}
    conn.execute(insert_for(conn, lineage_nodes).values(**row).on_conflict_do_nothing())
    return node


def walk(
    conn: Connection,
    start: str,
    direction: Direction = "upstream",
    *,
    depth: int = 10,
    limit: int | None = 10_000,
) -> list[LineageHit]:
    """Every node within `depth` edges of `start` in one direction, nearest first.

    Args:
        conn: A connection in any transaction.
        start: The node to walk from.
        direction: `upstream` (what it came from) or `downstream` (what was made from it).
        depth: The largest number of edges to follow (at least 1).
        limit: The most nodes to return; None for all.

    Returns:
        One hit per node reached, at its smallest depth, ordered by depth then node id.

    Examples:
        >>> [hit.node for hit in walk(conn, "model-version:chat@v3", "upstream")]  # doctest: +SKIP
        ['run:01JD…', 'dataset-version:ab12…', …]
    """
    parse_node_id(start)
    if depth < 1:
        raise InputError(f"expected a walk depth of at least 1; got {depth}")
    _require_node(conn, start)
    near, far = _ends(direction)
    seed = select(
        far.label("node"),
        near.label("via"),
        lineage_edges.c.kind.label("edge_kind"),
        literal(1, Integer).label("depth"),
    ).where(near == start)
    reached = seed.cte("reached", recursive=True)
    nxt, on = _next_edges(conn, reached.c.node, direction)
    step = (
        select(nxt.c.node, nxt.c.via, nxt.c.kind, (reached.c.depth + 1).label("depth"))
        .select_from(reached.join(nxt, on))
        .where(reached.c.depth < depth)
    )
    # UNION (not UNION ALL) stops re-expanding a node reached twice at the same depth.
    reached = reached.union(step)
    ranked = select(
        reached.c.node,
        reached.c.via,
        reached.c.edge_kind,
        reached.c.depth,
        func.row_number()
        .over(partition_by=reached.c.node, order_by=(reached.c.depth, reached.c.via, reached.c.edge_kind))
        .label("rank"),
    ).subquery()
    query = (
        select(ranked.c.node, ranked.c.depth, ranked.c.via, ranked.c.edge_kind)
        .where(ranked.c.rank == 1, ranked.c.node != start)
        .order_by(ranked.c.depth, ranked.c.node)
    )
    if limit is not None:
        query = query.limit(limit)
    return [LineageHit(row.node, row.depth, row.via, row.edge_kind) for row in conn.execute(query)]


def path_between(conn: Connection, source: str, target: str, *, max_depth: int = 20) -> LineagePath | None:
    """The shortest chain of edges joining two nodes, searched downstream then upstream of `source`.

    Args:
        conn: A connection in any transaction.
        source: Where the path starts, e.g. a served response's trace.
        target: Where it ends, e.g. a source document's record.
        max_depth: The longest path to look for.

    Returns:
        The path, or None if the nodes are not joined within `max_depth` edges in either direction.
    """
    for node in (source, target):
        parse_node_id(node)
        _require_node(conn, node)
    if source == target:
        return LineagePath((source,), (), "downstream")
    directions: tuple[Direction, ...] = ("downstream", "upstream")
    for direction in directions:
        found = _directed_path(conn, source, target, direction, max_depth)
        if found is not None:
            return found
    return None


def _ends(direction: Direction) -> tuple[ColumnElement[str], ColumnElement[str]]:
    """The (near, far) end columns of an edge when walking in `direction`."""
    if direction == "upstream":
        return lineage_edges.c.downstream, lineage_edges.c.upstream
    return lineage_edges.c.upstream, lineage_edges.c.downstream


def _next_edges(
    conn: Connection, frontier: ColumnElement[str], direction: Direction
) -> tuple[Any, ColumnElement[bool]]:
    """The edges leaving the frontier of a recursive walk, as (selectable with node/via/kind, ON clause).

    PostgreSQL's planner cannot estimate a recursive CTE's work table, and with a few nodes of
    huge fan-out (a model serving many traces) it picks a hash join that scans every edge at each
    depth: 180 ms instead of 8 ms at 100k edges (benchmarks/lineage.py). A LATERAL subquery with
    OFFSET 0, which the planner may not flatten, forces one index lookup per frontier node.
    SQLite always plans this join as index lookups, and has no LATERAL.
    """
    near, far = _ends(direction)
    columns = (far.label("node"), near.label("via"), lineage_edges.c.kind.label("kind"))
    if conn.dialect.name == "postgresql":
        return select(*columns).where(near == frontier).offset(0).lateral("next_edges"), true()
    edges = select(*columns, near.label("near")).subquery("next_edges")
    return edges, edges.c.near == frontier


def _require_node(conn: Connection, node: str) -> None:
    if conn.scalar(select(lineage_nodes.c.kind).where(lineage_nodes.c.id == node)) is None:
        raise NotFoundError(
            f"no lineage node {node!r} in this workspace",
            hint="node ids look like 'run:<ulid>'; copy one from `keel audit log` or a command's --json output",
        )


# Ids never hold whitespace, so a space and a tab are safe separators inside the CTE's path text.
_NODE_SEP, _KIND_SEP = " ", "\t"


def _directed_path(
    conn: Connection, source: str, target: str, direction: Direction, max_depth: int
) -> LineagePath | None:
    near, far = _ends(direction)
    text = String()
    seed = select(
        far.label("node"),
        literal(1, Integer).label("depth"),
        (literal(source, text) + _NODE_SEP + far).label("nodes"),
        lineage_edges.c.kind.cast(text).label("kinds"),
    ).where(near == source)
    frontier = seed.cte("frontier", recursive=True)
    nxt, on = _next_edges(conn, frontier.c.node, direction)
    step = (
        select(
            nxt.c.node,
            frontier.c.depth + 1,
            frontier.c.nodes + _NODE_SEP + nxt.c.node,
            frontier.c.kinds + _KIND_SEP + nxt.c.kind,
        )
        .select_from(frontier.join(nxt, on))
        .where(frontier.c.depth < max_depth, frontier.c.node != target)
    )
    frontier = frontier.union_all(step)
    # Both engines fill a recursive CTE breadth first, so the first row found is a shortest path
    # and LIMIT 1 stops the search there instead of enumerating every path.
    row = conn.execute(select(frontier.c.nodes, frontier.c.kinds).where(frontier.c.node == target).limit(1)).first()
    if row is None:
        return None
    return LineagePath(tuple(row.nodes.split(_NODE_SEP)), tuple(row.kinds.split(_KIND_SEP)), direction)
