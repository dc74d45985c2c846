"""The dedup steps as distributed Ray Data phases: no corpus, signature set or bucket table meets on one node.

Every grouping is a shuffle on a bucket column (a hash of the key, `buckets` values), then one vectorised
numpy pass per bucket, so Ray calls Python once per bucket, not once per key. Rules match the local steps:

What a step observes of each row (`step.observe`: exact_dedup's text hash, near_dedup's MinHash signature) is
added as a column by the stage that precedes the decision, in the same task that ran that stage's steps on the
block (`with_observation`), so texts are read once and never leave the node that holds them for a decision.

- exact_dedup: per text hash the row earliest in input order (its `_order`) stays. The decision is the
  `_order` of every later copy (8 bytes per duplicate).
- near_dedup: one row per (document, band) keyed by
  the band's 64-bit key (`keel.curate._minhash.band_keys`, as the local index); per band group all id pairs
  (a star from the smallest id past 32 members); pairs meet their two signatures through two shuffles keyed
  by id; accepted pairs are the edges whose connected components are the clusters, each keeping its smallest
  id as `NearDuplicateIndex` does. The decision is `{member id: kept id}` (what the local step decides too).
  Up to `_DRIVER_EDGES` (2 M) accepted pairs, the components are found on the driver in one vectorised pass: the
  pairs are of the size of the decision the driver gathers anyway, and each round of the distributed
  min-label propagation (used above that) is a Ray shuffle, ~1 s each on a small cluster.

This module knows Ray Data datasets and the two steps; it does not know recipes, files or reports.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from keel.core.errors import ConfigError
from keel.curate._basic_steps import ExactDedupStep
from keel.curate._minhash import EMPTY, MinHashParams, band_keys, connected_components, pairs_within_groups
from keel.curate._near_dedup import NearDedupParams, NearDedupStep
from keel.curate._step import GlobalStep

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["OBSERVED", "exact_duplicates", "near_duplicates", "with_observation"]

KEY = "_key"  # exact_dedup's 64-bit text hash
SIGNATURE = "_signature"  # near_dedup's MinHash signature, num_perm x uint32
OBSERVED = (KEY, SIGNATURE)

_SPREAD = np.uint64(0x9E3779B97F4A7C15)
_MAX_ROUNDS = 10_000
# Above this many accepted pairs, components are found by shuffles. At the threshold the driver holds the pairs'
# ids as fixed-width numpy strings (~100 B each at 24 characters), their sorted union and the result dict:
# ~1 GB at its peak, of the order of the {member: kept} decision it gathers anyway.
_DRIVER_EDGES = 2_000_000
# Rows per task of the maps that feed a shuffle. Ray bundles consecutive blocks into one task up to this many
# rows, so a shuffle starts from ~rows/_SHUFFLE_ROWS blocks instead of one per shard: a sort shuffle costs per
# block pair, and with one block per 500-record shard the two dedup decisions took 2x as long on one machine.
# These maps read only the observation columns (8 or 448 bytes per row), projected block by block first.
_SHUFFLE_ROWS = 16_384


def with_observation(step: GlobalStep, table: pa.Table) -> pa.Table:
    """`table` with what `step` observes of each row (its own `observe`) as the column its decision reads."""
    observed = step.observe(table)
    if isinstance(step, ExactDedupStep):
        return table.append_column(KEY, pa.array(np.asarray(observed, dtype=np.uint64), pa.uint64()))
    if isinstance(step, NearDedupStep):
        assert isinstance(step.params, NearDedupParams)
        _, signatures, _ = observed  # texts are kept only for verification 'exact', refused on Ray
        flat = pa.array(np.asarray(signatures, dtype=np.uint32).ravel(), pa.uint32())
        return table.append_column(SIGNATURE, pa.FixedSizeListArray.from_arrays(flat, step.params.minhash().num_perm))
    raise AssertionError(f"no distributed decision for {step.name!r}")


def _projected(ds: Dataset, columns: list[str]) -> Dataset:
    """`columns` of every block, projected where each block is (so bundling them later moves no text)."""
    projected: Dataset = ds.select_columns(columns).materialize()
    return projected


def _id_buckets(ids: pa.Array | pa.ChunkedArray, buckets: int) -> pa.Array:
    """A stable bucket per string id (xxh3, not Python's salted `hash`)."""
    values = [xxhash.xxh3_64_intdigest(i.encode()) % buckets for i in ids.to_pylist()]
    return pa.array(values, pa.int32())


def _key_buckets(keys: npt.NDArray[np.uint64], buckets: int) -> pa.Array:
    return pa.array(((keys * _SPREAD) >> np.uint64(40)) % np.uint64(buckets), pa.int32())


# --- exact_dedup ---------------------------------------------------------------------------------


def _exact_key_batch(table: pa.Table, *, buckets: int) -> pa.Table:
    keys = table.column(KEY).to_numpy()
    return pa.table({"bucket": _key_buckets(keys, buckets), "key": keys, "_order": table.column("_order")})


def _later_copies(group: pa.Table) -> pa.Table:
    """The `_order` of every row whose key appeared earlier (in `_order`) within this bucket."""
    keys = group.column("key").to_numpy()
    order = group.column("_order").to_numpy()
    idx = np.lexsort((order, keys))
    sorted_keys = keys[idx]
    later = np.concatenate(([False], sorted_keys[1:] == sorted_keys[:-1]))
    return pa.table({"_order": pa.array(order[idx][later], pa.int64())})


def exact_duplicates(ds: Dataset, buckets: int) -> npt.NDArray[np.int64]:
    """The sorted `_order` values of the rows `exact_dedup` drops: every copy but the earliest.

    `ds` holds the rows `with_observation` gave exact_dedup's text hash.
    """
    import ray

    keys = _projected(ds, [KEY, "_order"]).map_batches(
        partial(_exact_key_batch, buckets=buckets), batch_size=_SHUFFLE_ROWS, batch_format="pyarrow"
    )
    later = keys.groupby("bucket").map_groups(_later_copies, batch_format="pyarrow")
    parts = [t.column("_order").to_numpy() for t in ray.get(later.to_arrow_refs()) if t.num_rows]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


# --- near_dedup ----------------------------------------------------------------------------------

_NODE_SCHEMA = pa.schema([("bucket", pa.int32()), ("node", pa.string()), ("other", pa.string())])


def _signature_batch(table: pa.Table, *, buckets: int) -> pa.Table:
    return pa.table(
        {
            "bucket": _id_buckets(table.column("id"), buckets),
            "node": table.column("id"),
            "other": pa.nulls(table.num_rows, pa.string()),
            "sig": table.column(SIGNATURE),
        }
    )


def _signatures(column: pa.ChunkedArray | pa.Array, num_perm: int) -> npt.NDArray[np.uint32]:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.uint32).reshape(-1, num_perm)


def _band_rows(table: pa.Table, *, bands: int, rows: int, num_perm: int, buckets: int) -> pa.Table:
    """One row per (valid document, band): the band's key (`band_keys`, as the local index keys it)."""
    sig = _signatures(table.column("sig"), num_perm)
    valid = np.flatnonzero(~(sig == EMPTY).all(axis=1))
    ids = table.column("node").combine_chunks().take(pa.array(valid, pa.int64()))
    keys = np.stack([band_keys(sig[valid], band, rows) for band in range(bands)])
    band_of = np.repeat(np.arange(bands, dtype=np.int64), len(valid))
    flat = keys.ravel()
    return pa.table(
        {
            "bucket": _key_buckets(flat ^ (band_of.astype(np.uint64) * _SPREAD), buckets),
            "band": pa.array(band_of),
            "key": pa.array(flat),
            "id": pa.concat_arrays([ids] * bands),
        }
    )


def _candidate_pairs(group: pa.Table, *, buckets: int) -> pa.Table:
    """Id pairs `(lo < hi)` sharing a band key: all pairs of small groups, a star from the smallest id otherwise."""
    group = group.sort_by([("band", "ascending"), ("key", "ascending"), ("id", "ascending")])
    band, key = group.column("band").to_numpy(), group.column("key").to_numpy()
    ids = np.asarray(group.column("id").to_pylist(), dtype=object)
    new = np.concatenate(([True], (band[1:] != band[:-1]) | (key[1:] != key[:-1])))
    lo, hi = pairs_within_groups(np.cumsum(new))
    lo_ids = pa.array(ids[lo].tolist(), pa.string())
    return pa.table(
        {
            "bucket": _id_buckets(lo_ids, buckets),
            "node": lo_ids,
            "other": pa.array(ids[hi].tolist(), pa.string()),
        }
    )


def _with_signature(group: pa.Table, *, num_perm: int, buckets: int) -> pa.Table:
    """Each distinct pair `(node=lo, other=hi)` with lo's signature, re-keyed to meet hi's signature next."""
    is_sig = pc.is_null(group.column("other"))
    sigs, pairs = group.filter(is_sig), group.filter(pc.invert(is_sig))
    pairs = pairs.group_by(["node", "other"]).aggregate([])  # a pair found in several bands counts once
    where = pc.index_in(pairs.column("node"), value_set=sigs.column("node").combine_chunks())
    return pa.table(
        {
            "bucket": _id_buckets(pairs.column("other"), buckets),
            "node": pairs.column("other"),
            "other": pairs.column("node"),
            "sig": sigs.column("sig").take(where),
        }
    )


def _similarity(group: pa.Table, *, num_perm: int, accept: float) -> pa.Table:
    """The pairs of this bucket whose estimated Jaccard (share of equal signature slots) is accepted."""
    is_sig = pc.is_null(group.column("other"))
    sigs, pairs = group.filter(is_sig), group.filter(pc.invert(is_sig))
    where = pc.index_in(pairs.column("node"), value_set=sigs.column("node").combine_chunks())
    mine = _signatures(sigs.column("sig").take(where), num_perm)
    theirs = _signatures(pairs.column("sig"), num_perm)
    similarity = (mine == theirs).mean(axis=1) if len(mine) else np.zeros(0)
    accepted = pa.array(similarity >= accept, pa.bool_())
    scored = pa.table({"lo": pairs.column("other"), "hi": pairs.column("node"), "similarity": similarity})
    return scored.filter(accepted)


def _propagate(group: pa.Table, *, buckets: int) -> pa.Table:
    """One round of min-label propagation for the nodes of this bucket.

    Rows are edges `(node, other, label)` carrying node's label, and proposals `(node, null, label)` from
    neighbours. Each node takes the smallest label it holds or was offered; only nodes whose label fell
    propose it to their neighbours (the others already did when they got it).
    """
    edge = pc.invert(pc.is_null(group.column("other"))).to_numpy(zero_copy_only=False)
    nodes, node_idx = np.unique(np.asarray(group.column("node").to_pylist(), dtype=object), return_inverse=True)
    labels, label_idx = np.unique(np.asarray(group.column("label").to_pylist(), dtype=object), return_inverse=True)
    best = np.full(len(nodes), len(labels), dtype=np.int64)
    np.minimum.at(best, node_idx, label_idx)
    held = np.full(len(nodes), len(labels), dtype=np.int64)
    np.minimum.at(held, node_idx[edge], label_idx[edge])
    edges = group.filter(pa.array(edge))
    new_label = labels[best[node_idx[edge]]]
    fell = (best < held)[node_idx[edge]]
    kept = pa.table(
        {"bucket": edges.column("bucket"), "node": edges.column("node"), "other": edges.column("other"),
         "label": pa.array(new_label.tolist(), pa.string()), "proposal": pa.array(np.zeros(len(new_label), np.int64))}
    )  # fmt: skip
    targets = edges.column("other").filter(pa.array(fell))
    offered = pa.table(
        {"bucket": _id_buckets(targets, buckets), "node": targets, "other": pa.nulls(len(targets), pa.string()),
         "label": pa.array(new_label[fell].tolist(), pa.string()),
         "proposal": pa.array(np.ones(len(targets), np.int64))}
    )  # fmt: skip
    return pa.concat_tables([kept, offered])


def _first_round(table: pa.Table, *, buckets: int) -> pa.Table:
    """Edges both ways, each node labelled by itself and proposing itself to its neighbour."""
    lo, hi = table.column("lo"), table.column("hi")
    node = pa.concat_arrays([lo.combine_chunks(), hi.combine_chunks()])
    other = pa.concat_arrays([hi.combine_chunks(), lo.combine_chunks()])
    n = len(node)
    edges = pa.table({"bucket": _id_buckets(node, buckets), "node": node, "other": other, "label": node,
                      "proposal": pa.array(np.zeros(n, np.int64))})  # fmt: skip
    offers = pa.table({"bucket": _id_buckets(other, buckets), "node": other, "other": pa.nulls(n, pa.string()),
                       "label": node, "proposal": pa.array(np.ones(n, np.int64))})  # fmt: skip
    return pa.concat_tables([edges, offers])


def _components(edges: Dataset, buckets: int) -> dict[str, str]:
    """`{node: smallest node id of its connected component}` over accepted pair edges."""
    import ray

    state = edges.map_batches(partial(_first_round, buckets=buckets), batch_format="pyarrow").materialize()
    for _ in range(_MAX_ROUNDS):
        state = state.groupby("bucket").map_groups(partial(_propagate, buckets=buckets), batch_format="pyarrow")
        state = state.materialize()
        if not state.count() or not state.sum("proposal"):
            break
    else:  # pragma: no cover - a chain of 10,000 near-duplicates
        raise ConfigError(f"near_dedup clustering did not converge in {_MAX_ROUNDS} rounds")
    labels: dict[str, str] = {}
    for table in ray.get(state.to_arrow_refs()):
        for node, label in zip(table.column("node").to_pylist(), table.column("label").to_pylist(), strict=True):
            labels[node] = label
    return labels


def _components_here(verified: Dataset) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """`_components` on the driver, and the report's closest pairs: gather the accepted pairs once."""
    import ray

    tables = [t for t in ray.get(verified.to_arrow_refs()) if t.num_rows]
    pairs = pa.concat_tables(tables).combine_chunks()
    lo = pairs.column("lo").to_numpy(zero_copy_only=False).astype(str)
    hi = pairs.column("hi").to_numpy(zero_copy_only=False).astype(str)
    ids, codes = np.unique(np.concatenate([lo, hi]), return_inverse=True)  # sorted: smallest code, smallest id
    labels = connected_components(len(ids), codes[: len(lo)], codes[len(lo) :])
    closest = pairs.sort_by([("similarity", "ascending"), ("lo", "ascending"), ("hi", "ascending")]).slice(0, 5)
    return dict(zip(ids.tolist(), ids[labels].tolist(), strict=True)), closest.to_pylist()


def near_duplicates(ds: Dataset, params: NearDedupParams, buckets: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Clusters of near-duplicate documents, and the step's report (same keys and counts as the local step).

    `ds` holds the rows `with_observation` gave near_dedup's MinHash signature.

    Returns:
        `{member id: kept id}` for every document in a cluster of two or more, and the report.
    """
    if params.verification == "exact":
        raise ConfigError(
            "near_dedup verification 'exact' needs every text on one node; the ray engine verifies by signature",
            hint="use verification: signature (the default) with --engine ray, or run with --engine local",
        )
    mh = params.minhash()
    bands, rows, num_perm = int(mh.bands or 0), int(mh.rows or 0), mh.num_perm
    sigs = _projected(ds, ["id", SIGNATURE]).map_batches(
        partial(_signature_batch, buckets=buckets), batch_size=_SHUFFLE_ROWS, batch_format="pyarrow"
    )
    sigs = sigs.materialize()
    band_rows = sigs.map_batches(
        partial(_band_rows, bands=bands, rows=rows, num_perm=num_perm, buckets=buckets), batch_format="pyarrow"
    )
    pairs = band_rows.groupby("bucket").map_groups(partial(_candidate_pairs, buckets=buckets), batch_format="pyarrow")
    pairs = pairs.map_batches(partial(_with_null_sig, num_perm=num_perm), batch_format="pyarrow")
    half = (
        sigs.union(pairs)
        .groupby("bucket")
        .map_groups(partial(_with_signature, num_perm=num_perm, buckets=buckets), batch_format="pyarrow")
    )
    half = half.materialize()
    accept = mh.verify_threshold if mh.verify else -1.0
    scored = (
        sigs.union(half)
        .groupby("bucket")
        .map_groups(partial(_similarity, num_perm=num_perm, accept=accept), batch_format="pyarrow")
    )
    verified = scored.materialize()
    edges = verified.count()
    labels: dict[str, str] = {}
    closest: list[dict[str, Any]] = []
    if 0 < edges <= _DRIVER_EDGES:
        labels, closest = _components_here(verified)
    elif edges:
        labels = _components(verified, buckets)
        closest = verified.sort(["similarity", "lo", "hi"]).take(5)
    report = _near_report(mh, labels, documents=sigs.count(), candidates=half.count(), verified=edges, closest=closest)
    return labels, report


def _with_null_sig(table: pa.Table, *, num_perm: int) -> pa.Table:
    """Pair rows in the signature rows' schema (null signature), so the two can be shuffled together."""
    sig_type = pa.list_(pa.uint32(), num_perm)
    return table.append_column("sig", pa.nulls(table.num_rows, sig_type))


def _near_report(
    mh: MinHashParams, labels: dict[str, str], *, documents: int, candidates: int, verified: int,
    closest: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    kept = np.asarray(list(labels.values()), dtype=object)
    _, sizes = np.unique(kept, return_counts=True) if len(kept) else (None, np.zeros(0, np.int64))
    histogram = np.unique(sizes, return_counts=True)
    return {
        "documents": documents,
        "clusters": len(sizes),
        "duplicates": int(sizes.sum() - len(sizes)),
        "cluster_sizes": {int(s): int(c) for s, c in zip(*histogram, strict=True)},
        "candidate_pairs": candidates,
        "verified_pairs": verified,
        "verification": "signature" if mh.verify else "none",
        "bands": mh.bands,
        "rows": mh.rows,
        "threshold": mh.threshold,
        "examples": [
            {"kept": labels[row["lo"]], "a": row["lo"], "b": row["hi"], "jaccard": round(float(row["similarity"]), 4)}
            for row in closest
        ],
        "s_curve": [[round(s, 2), round(p, 4)] for s, p in mh.s_curve()],
    }
