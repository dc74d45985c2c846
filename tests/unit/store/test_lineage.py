from __future__ import annotations

import pytest

from keel.core.errors import InputError, NotFoundError
from keel.store import Edge, Store, add_edge, add_edges, node_id, parse_node_id, path_between, walk

DS = "dataset-version:" + "a" * 64
DS2 = "dataset-version:" + "b" * 64
RUN = "run:01JD3Z00000000000000000000"
MODEL = "model-version:chat@v1"
TRACE = "trace:01JD3Z00000000000000000001"


def _graph(store: Store) -> None:
    #  DS ─derived_from→ DS2 ─trained_on→ RUN ─produced→ MODEL ─serves→ TRACE
    #  DS ─────────────────trained_on────→ RUN   (a shortcut: RUN is at depth 1 from DS)
    with store.db.write() as conn:
        add_edges(
            conn,
            [
                Edge(DS, DS2, "derived_from"),
                Edge(DS2, RUN, "trained_on"),
                Edge(DS, RUN, "trained_on"),
                Edge(RUN, MODEL, "produced"),
                Edge(MODEL, TRACE, "serves"),
            ],
        )


def test_walks_upstream_and_downstream_with_smallest_depth(store: Store) -> None:
    _graph(store)
    with store.db.read() as conn:
        up = walk(conn, TRACE, "upstream")
        down = walk(conn, DS, "downstream")
    assert [(h.node, h.depth, h.via, h.edge_kind) for h in up] == [
        (MODEL, 1, TRACE, "serves"),
        (RUN, 2, MODEL, "produced"),
        (DS, 3, RUN, "trained_on"),
        (DS2, 3, RUN, "trained_on"),
    ]
    assert [(h.node, h.depth) for h in down] == [(DS2, 1), (RUN, 1), (MODEL, 2), (TRACE, 3)]


def test_walk_depth_and_limit_bound_the_result(store: Store) -> None:
    _graph(store)
    with store.db.read() as conn:
        assert [h.node for h in walk(conn, TRACE, "upstream", depth=2)] == [MODEL, RUN]
        assert [h.node for h in walk(conn, DS, "downstream", limit=2)] == [DS2, RUN]
        assert walk(conn, DS, "upstream") == []
        with pytest.raises(InputError, match="depth of at least 1"):
            walk(conn, DS, depth=0)


def test_a_cycle_does_not_loop_forever(store: Store) -> None:
    with store.db.write() as conn:
        add_edges(conn, [Edge("run:a", "run:b", "x"), Edge("run:b", "run:c", "x"), Edge("run:c", "run:a", "x")])
    with store.db.read() as conn:
        hits = walk(conn, "run:a", "downstream", depth=50)
    assert [(h.node, h.depth) for h in hits] == [("run:b", 1), ("run:c", 2)]


def test_adding_an_edge_twice_is_a_no_op(store: Store) -> None:
    with store.db.write() as conn:
        add_edge(conn, DS, RUN, "trained_on")
        add_edge(conn, DS, RUN, "trained_on")
        assert add_edges(conn, []) == 0
    counts = store.db.count_rows()
    assert counts["lineage_edges"] == 1
    assert counts["lineage_nodes"] == 2


def test_shortest_path_in_either_direction(store: Store) -> None:
    _graph(store)
    with store.db.read() as conn:
        forward = path_between(conn, DS, TRACE)
        backward = path_between(conn, TRACE, DS)
        assert path_between(conn, DS2, DS2) is not None
        assert path_between(conn, TRACE, DS, max_depth=2) is None
    assert forward is not None and backward is not None
    assert forward.nodes == (DS, RUN, MODEL, TRACE)
    assert forward.kinds == ("trained_on", "produced", "serves")
    assert forward.direction == "downstream"
    assert backward.nodes == (TRACE, MODEL, RUN, DS)
    assert backward.direction == "upstream"


def test_nodes_not_in_the_graph_are_reported(store: Store) -> None:
    _graph(store)
    with store.db.read() as conn:
        with pytest.raises(NotFoundError, match="no lineage node 'run:missing'"):
            walk(conn, "run:missing")
        with pytest.raises(NotFoundError):
            path_between(conn, DS, "run:missing")


@pytest.mark.parametrize(
    "bad", ["run", "run:", ":x", "Run:x", "run:has space", "run_x:1", "-run:x", "run:" + "x" * 300]
)
def test_malformed_node_ids_are_refused(bad: str) -> None:
    with pytest.raises(InputError, match="expected a lineage node id"):
        parse_node_id(bad)


def test_node_id_round_trip() -> None:
    assert parse_node_id(node_id("model-version", "chat@v3")) == ("model-version", "chat@v3")


def test_bad_edges_are_refused_before_anything_is_written(store: Store) -> None:
    with store.db.write() as conn:
        with pytest.raises(InputError, match="snake_case"):
            add_edges(conn, [Edge(DS, RUN, "trained_on"), Edge(DS, RUN, "Trained On")])
        with pytest.raises(InputError, match="two different nodes"):
            add_edge(conn, DS, DS, "derived_from")
    assert store.db.count_rows()["lineage_edges"] == 0
