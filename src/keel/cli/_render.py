"""Small text renderings shared by commands: sparklines, byte sizes, durations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from keel.core.clock import format_time
from keel.registry import AliasEvent
from keel.store import LineageHit

__all__ = ["alias_history_table", "alias_move", "duration", "human_bytes", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """A one-line chart of `values`, downsampled to at most `width` characters.

    Examples:
        >>> sparkline([3, 2, 1, 0])
        '█▆▃▁'
    """
    if not values:
        return ""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    low, high = min(values), max(values)
    if high == low:
        return _BARS[len(_BARS) // 2] * len(values)
    scale = (len(_BARS) - 1) / (high - low)
    return "".join(_BARS[round((v - low) * scale)] for v in values)


def human_bytes(size: int) -> str:
    """Bytes in the largest unit that keeps the number above one.

    Examples:
        >>> human_bytes(1536)
        '1.5 KiB'
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(start: datetime, end: datetime | None) -> str:
    """`1m 05s`-style elapsed time, or `running` when there is no end."""
    if end is None:
        return "running"
    seconds = int((end - start).total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def alias_move(event: AliasEvent) -> str:
    """One alias move as Rich-safe text: `chat@production: v2 → v1  (reason)`."""
    before = "(unset)" if event.from_version is None else f"v{event.from_version}"
    after = "(removed)" if event.to_version is None else f"v{event.to_version}"
    return escape(f"{event.name}@{event.alias}: {before} → {after}  ({event.reason})")


def alias_history_table(events: Sequence[AliasEvent]) -> Table:
    """Every move of a model's or prompt's aliases, oldest first, user text escaped."""
    table = Table("#", "time (UTC)", "alias", "from", "to", "actor", "reason", "evidence")
    for e in events:
        table.add_row(
            str(e.id),
            format_time(e.at)[:19],
            escape(e.alias),
            "—" if e.from_version is None else f"v{e.from_version}",
            "(removed)" if e.to_version is None else f"v{e.to_version}",
            escape(e.actor),
            escape(e.reason),
            escape(e.evidence or ""),
        )
    return table


def lineage_tree(label: str, roots: Sequence[str], hits: Sequence[LineageHit]) -> Tree:
    """A walk's hits as a tree, each under the node it came via.

    That is one of `roots` (the nodes the walk started from, shown as branches), another hit, or else the
    `label` line itself.
    """
    tree = Tree(label)
    branches = {root: tree.add(f"[bold]{escape(root)}[/bold]") for root in roots}
    for hit in hits:  # nearest first, so every hit's `via` already has a branch
        parent = branches.get(hit.via, tree)
        branches[hit.node] = parent.add(f"{escape(hit.node)} [dim]({hit.edge_kind})[/dim]")
    return tree
