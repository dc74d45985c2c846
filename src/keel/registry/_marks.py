"""Erasure marks, read: which objects a data-subject erasure removed or tainted.

keel.govern writes them with each erasure's certificate; the registry and the gateway's listings read
them so `keel model show`, model cards and `keel deploy list` say "trained on erased data".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from keel.store.schema import erasure_marks

__all__ = ["Mark", "marks_for"]


@dataclass(frozen=True)
class Mark:
    """What an erasure did to one object."""

    node: str
    mark: str  # erased, trained_on_erased_data, serves_erased_data
    erasure_id: str
    replaced_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"mark": self.mark, "erasure": self.erasure_id, "replaced_by": self.replaced_by}


def marks_for(conn: Connection, nodes: Sequence[str]) -> dict[str, list[Mark]]:
    """The erasure marks of each of these lineage nodes (absent: none)."""
    found: dict[str, list[Mark]] = {}
    for start in range(0, len(nodes), 500):
        part = list(nodes[start : start + 500])
        for row in conn.execute(select(erasure_marks).where(erasure_marks.c.node.in_(part))):
            found.setdefault(row.node, []).append(Mark(row.node, row.mark, row.erasure_id, row.replaced_by))
    return found
