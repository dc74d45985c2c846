"""Lineage drawn as a graph: a server-rendered SVG, each node a link to its console page.

Graphviz is not a dependency (nor installed on our machines), so the layout is a small layered one written
here: upstream nodes in columns to the left of the page's own node by their distance, downstream ones to the
right; within a column nodes are ordered by the mean row of their neighbours in the column nearer the centre
(one barycentre sweep outwards, the usual first step against crossings), then spaced evenly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

__all__ = ["lineage_svg", "node_href"]

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 190, 30, 60, 14, 8
LABEL_CHARS = 26


def node_href(node: str, base: str) -> str | None:
    """The console page of a lineage node, or None when the console has none (sources, eval results)."""
    kind, _, ident = node.partition(":")
    name, _, version = ident.rpartition("@v")
    versioned = bool(name) and version.isdigit()
    pages = {
        "trace": f"/traces/{quote(ident)}",
        "run": f"/runs/{quote(ident)}",
        "record": f"/records/{quote(ident)}",
        "deployment": f"/deployments/{quote(ident)}",
        "model-version": f"/models/{quote(name)}/v{version}" if versioned else None,
        "dataset-version": f"/datasets/{quote(name)}/v{version}" if versioned else None,
        "prompt-version": f"/prompts/{quote(name)}?version={version}" if versioned else None,
        "index-version": f"/indexes?ref={quote(ident)}" if versioned else None,
    }
    path = pages.get(kind)
    return base + path if path else None


def _short(node: str) -> str:
    return node if len(node) <= LABEL_CHARS else node[: LABEL_CHARS - 1] + "…"


def lineage_svg(center: str, upstream: Iterable[Any], downstream: Iterable[Any], base: str) -> Markup:
    """An SVG of `center` with the hits of `keel.store.walk` upstream and downstream (node, via, depth).

    Each hit draws one edge (the walk's first path to the node), pointing the way data flowed.
    """
    layer = {center: 0}
    edges: list[tuple[str, str, str]] = []
    for hit in upstream:
        layer.setdefault(hit.node, -int(hit.depth))
        edges.append((hit.node, hit.via, hit.edge_kind))
    for hit in downstream:
        layer.setdefault(hit.node, int(hit.depth))
        edges.append((hit.via, hit.node, hit.edge_kind))
    columns = _order(center, layer, edges)
    return _draw(center, columns, edges, base)


def _order(center: str, layer: dict[str, int], edges: list[tuple[str, str, str]]) -> dict[int, list[str]]:
    """The nodes of each column, ordered by the mean row of their neighbours one column nearer the centre."""
    neighbours: dict[str, list[str]] = defaultdict(list)
    for a, b, _ in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    columns: dict[int, list[str]] = defaultdict(list)
    for node, index in layer.items():
        columns[index].append(node)
    row: dict[str, float] = {center: 0.0}
    for index in sorted(columns, key=abs):
        if index == 0:
            continue
        inner = index - 1 if index > 0 else index + 1

        def barycentre(node: str, inner: int = inner) -> tuple[float, str]:
            near = [row[n] for n in neighbours[node] if layer.get(n) == inner and n in row]
            return (sum(near) / len(near) if near else 0.0, node)

        columns[index].sort(key=barycentre)
        for position, node in enumerate(columns[index]):
            row[node] = float(position)
    return columns


def _draw(center: str, columns: dict[int, list[str]], edges: list[tuple[str, str, str]], base: str) -> Markup:
    height_rows = max(len(nodes) for nodes in columns.values())
    first = min(columns)
    xy: dict[str, tuple[float, float]] = {}
    for index, nodes in columns.items():
        offset = (height_rows - len(nodes)) / 2  # centre short columns
        for position, node in enumerate(nodes):
            x = float(PAD + (index - first) * (BOX_W + GAP_X))
            y = PAD + (position + offset) * (BOX_H + GAP_Y)
            xy[node] = (x, y)
    width = PAD * 2 + len(columns) * BOX_W + (len(columns) - 1) * GAP_X
    height = PAD * 2 + height_rows * BOX_H + (height_rows - 1) * GAP_Y
    parts = [
        f'<svg class="lineage-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage of {escape(center)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#667"/></marker></defs>',
    ]
    for a, b, kind in edges:
        (ax, ay), (bx, by) = xy[a], xy[b]
        x1, y1, x2, y2 = ax + BOX_W, ay + BOX_H / 2, bx, by + BOX_H / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path d="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" fill="none" stroke="#667" '
            f'marker-end="url(#arrow)"><title>{escape(kind)}</title></path>'
        )
    for node, (x, y) in xy.items():
        fill = "#dde8ff" if node == center else "#f4f4f6"
        box = (
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="{fill}" stroke="#889"/>'
            f'<text x="{x + 6}" y="{y + BOX_H / 2 + 4}" font-size="12" font-family="monospace">'
            f"{escape(_short(node))}</text><title>{escape(node)}</title>"
        )
        href = node_href(node, base) if node != center else None
        if href:
            parts.append(f'<a href="{escape(href)}" data-node="{escape(node)}">{box}</a>')
        else:
            parts.append(f'<g data-node="{escape(node)}">{box}</g>')
    parts.append("</svg>")
    return Markup("".join(parts))
