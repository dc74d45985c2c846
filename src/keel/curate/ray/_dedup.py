"""The dedup steps as distributed Ray Data phases: no corpus, signature set or bucket table meets on one node.

Every grouping is a shuffle on a bucket column (a hash of the key, `buckets` values), then one vectorised
numpy pass per bucket, so Ray calls Python once per bucket, not once per key. Rules match the local steps:

What a step observes of each row (`step.observe`: exact_dedup's text hash, near_dedup's MinHash signature,
shingle sketch and keep rank) is added as a column by the stage that precedes the decision, in the same task
that ran that stage's steps on the block (`with_observation`), so texts are read once and never leave the
node that holds them for a decision.

- exact_dedup: per text hash the row earliest in input order (its `_order`) stays. The decision is the
  `_order` of every later copy (8 bytes per duplicate).
- near_dedup: one row per (document, band) keyed by the band's 64-bit key (`keel.curate._minhash.band_keys`,
  as the local index); each band group sorted by keep priority (keep rank, then `_order`) gives the pairs the
  local index gives (`pairs_within_groups`); pairs meet their two signatures and sketches through two
  shuffles keyed by id and are verified as locally (`verified_similarity`); the accepted pairs, with both
  ends' rank and order, go to the driver, which runs the local index's greedy keep pass on them
  (`representatives`, `cluster_report`). The decision is `{member id: kept id}` (what the local step decides).

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
from keel.curate._minhash import (
    EMPTY,
    MinHashParams,
    Sketches,
    band_keys,
    cluster_report,
    estimated_jaccard,
    keep_rank,
    pairs_within_groups,
    rep_similarities,
    representatives,
    verified_similarity,
)
from keel.curate._near_dedup import NearDedupParams, NearDedupStep
from keel.curate._step import GlobalStep

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["OBSERVED", "exact_duplicates", "near_duplicates", "with_observation"]

KEY = "_key"  # exact_dedup's 64-bit text hash
SIGNATURE = "_signature"  # near_dedup's MinHash signature, num_perm x uint32
RANK = "_keep_rank"  # near_dedup's keep rank: ascending is kept first (`keel.curate._minhash.keep_rank`)
SKETCH = "_sketch"  # near_dedup's bottom-k shingle sketch (`keel.curate._minhash.minhash_sketches`)
OBSERVED = (KEY, SIGNATURE, RANK, SKETCH)

_SPREAD = np.uint64(0x9E3779B97F4A7C15)
# Rows per task of the maps that feed a shuffle. Ray bundles consecutive blocks into one task up to this many
# rows, so a shuffle starts from ~rows/_SHUFFLE_ROWS blocks instead of one per shard: a sort shuffle costs per
# block pair, and with one block per 500-record shard the two dedup decisions took 2x as long on one machine.
# These maps read only the observation columns (8 or ~470 bytes per row), projected block by block first.
_SHUFFLE_ROWS = 16_384


def with_observation(step: GlobalStep, table: pa.Table) -> pa.Table:
    """`table` with what `step` observes of each row (its own `observe`) as the column its decision reads."""
    observed = step.observe(table)
    if isinstance(step, ExactDedupStep):
        return table.append_column(KEY, pa.array(np.asarray(observed, dtype=np.uint64), pa.uint64()))
    if isinstance(step, NearDedupStep):
        assert isinstance(step.params, NearDedupParams)
        _, signatures, _, scores, sketches = observed  # texts only for verification 'exact', refused on Ray
        flat = pa.array(np.asarray(signatures, dtype=np.uint32).ravel(), pa.uint32())
        table = table.append_column(SIGNATURE, pa.FixedSizeListArray.from_arrays(flat, step.params.minhash().num_perm))
        rank = np.zeros(table.num_rows) if scores is None else keep_rank(np.asarray(scores, dtype=np.float64))
        table = table.append_column(RANK, pa.array(rank, pa.float64()))
        if sketches is None:
            sketches = Sketches(np.zeros(0, np.uint32), np.zeros(table.num_rows + 1, np.int64))
        else:
            sketches = Sketches(*sketches)  # observe returns its arrays (work files hold data only)
        offsets = pa.array(sketches.offsets, pa.int64())
        return table.append_column(SKETCH, pa.LargeListArray.from_arrays(offsets, pa.array(sketches.values)))
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
# Rows of the near_dedup shuffles: a document's signature row (`other` null) or a pair row (`sig` null), each
# with both ends' keep rank (`keep_rank` of the keep score) and `_order`, so any group sorts by keep priority.
_RANKS = ("node_rank", "node_order", "other_rank", "other_order")


def _signature_batch(table: pa.Table, *, buckets: int) -> pa.Table:
    n = table.num_rows
    return pa.table(
        {
            "bucket": _id_buckets(table.column("id"), buckets),
            "node": table.column("id"),
            "other": pa.nulls(n, pa.string()),
            "sig": table.column(SIGNATURE),
            "sketch": table.column(SKETCH),
            "node_rank": table.column(RANK),
            "node_order": table.column("_order"),
            "other_rank": pa.nulls(n, pa.float64()),
            "other_order": pa.nulls(n, pa.int64()),
        }
    )


def _signatures(column: pa.ChunkedArray | pa.Array, num_perm: int) -> npt.NDArray[np.uint32]:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.uint32).reshape(-1, num_perm)


def _sketches(column: pa.ChunkedArray | pa.Array) -> Sketches:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = arr.offsets.to_numpy().astype(np.int64)
    return Sketches(np.asarray(arr.flatten().to_numpy(zero_copy_only=False), np.uint32), offsets - offsets[0])


def _band_rows(table: pa.Table, *, bands: int, rows: int, num_perm: int, buckets: int) -> pa.Table:
    """One row per (valid document, band): the band's key (`band_keys`, as the local index keys it)."""
    sig = _signatures(table.column("sig"), num_perm)
    valid = pa.array(np.flatnonzero(~(sig == EMPTY).all(axis=1)), pa.int64())
    keys = np.stack([band_keys(sig[valid.to_numpy()], band, rows) for band in range(bands)])
    band_of = np.repeat(np.arange(bands, dtype=np.int64), len(valid))
    flat = keys.ravel()

    def repeated(name: str) -> pa.Array:
        return pa.concat_arrays([table.column(name).combine_chunks().take(valid)] * bands)

    return pa.table(
        {
            "bucket": _key_buckets(flat ^ (band_of.astype(np.uint64) * _SPREAD), buckets),
            "band": pa.array(band_of),
            "key": pa.array(flat),
            "id": repeated("node"),
            "rank": repeated("node_rank"),
            "order": repeated("node_order"),
        }
    )


def _candidate_pairs(group: pa.Table, *, buckets: int) -> pa.Table:
    """Id pairs sharing a band key, `node` before `other` in keep priority (`pairs_within_groups`)."""
    group = group.sort_by([("band", "ascending"), ("key", "ascending"), ("rank", "ascending"), ("order", "ascending")])
    band, key = group.column("band").to_numpy(), group.column("key").to_numpy()
    new = np.concatenate(([True], (band[1:] != band[:-1]) | (key[1:] != key[:-1])))
    lo, hi = pairs_within_groups(np.cumsum(new))
    lo_at, hi_at = pa.array(lo, pa.int64()), pa.array(hi, pa.int64())
    ids, rank, order = group.column("id"), group.column("rank"), group.column("order")
    lo_ids = ids.take(lo_at).combine_chunks()
    return pa.table(
        {
            "bucket": _id_buckets(lo_ids, buckets),
            "node": lo_ids,
            "other": ids.take(hi_at).combine_chunks(),
            "node_rank": rank.take(lo_at).combine_chunks(),
            "node_order": order.take(lo_at).combine_chunks(),
            "other_rank": rank.take(hi_at).combine_chunks(),
            "other_order": order.take(hi_at).combine_chunks(),
        }
    )


def _with_signature(group: pa.Table, *, num_perm: int, buckets: int) -> pa.Table:
    """Each distinct pair `(node=lo, other=hi)` with lo's signature, re-keyed to meet hi's signature next."""
    is_sig = pc.is_null(group.column("other"))
    sigs, pairs = group.filter(is_sig), group.filter(pc.invert(is_sig))
    pairs = pairs.group_by(["node", "other", *_RANKS]).aggregate([])  # a pair found in several bands counts once
    where = pc.index_in(pairs.column("node"), value_set=sigs.column("node").combine_chunks())
    return pa.table(
        {
            "bucket": _id_buckets(pairs.column("other"), buckets),
            "node": pairs.column("other"),
            "other": pairs.column("node"),
            "sig": sigs.column("sig").take(where),
            "sketch": sigs.column("sketch").take(where),
            "node_rank": pairs.column("other_rank"),
            "node_order": pairs.column("other_order"),
            "other_rank": pairs.column("node_rank"),
            "other_order": pairs.column("node_order"),
        }
    )


def _similarity(group: pa.Table, *, num_perm: int, mh: MinHashParams) -> pa.Table:
    """The pairs of this bucket whose verified similarity (`verified_similarity`, as locally) is accepted."""
    is_sig = pc.is_null(group.column("other"))
    sigs, pairs = group.filter(is_sig), group.filter(pc.invert(is_sig))
    where = pc.index_in(pairs.column("node"), value_set=sigs.column("node").combine_chunks())
    mine = _signatures(sigs.column("sig").take(where), num_perm)
    theirs = _signatures(pairs.column("sig"), num_perm)
    rows = np.arange(len(mine), dtype=np.int64)
    similarity = estimated_jaccard(np.concatenate([mine, theirs]), rows, rows + len(mine))
    accepted = np.ones(len(mine), dtype=bool)
    if mh.verify:
        sketches = None
        if mh.sketch:
            sketches = (_sketches(sigs.column("sketch").take(where)), rows, _sketches(pairs.column("sketch")), rows)
        similarity, accepted = verified_similarity(similarity, sketches, float(mh.threshold or 0.0), mh)
    scored = pa.table(
        {
            "lo": pairs.column("other"),
            "hi": pairs.column("node"),
            "similarity": similarity,
            "lo_rank": pairs.column("other_rank"),
            "lo_order": pairs.column("other_order"),
            "hi_rank": pairs.column("node_rank"),
            "hi_order": pairs.column("node_order"),
        }
    )
    return scored.filter(pa.array(accepted, pa.bool_()))


def _clusters_here(
    verified: Dataset, mh: MinHashParams, *, documents: int, candidates: int
) -> tuple[dict[str, str], dict[str, Any]]:
    """The local index's greedy keep pass and report (`representatives`, `cluster_report`) over the accepted pairs.

    The pairs come to the driver: ~100 B each (two ids, ranks, orders, similarity), of the order of the
    `{member: kept}` decision the driver gathers anyway. A distributed pass would need one shuffle per round of
    the greedy keep pass, as many rounds as the longest chain of pairs.
    """
    import ray

    tables = [t for t in ray.get(verified.to_arrow_refs()) if t.num_rows]
    if not tables:
        empty = np.zeros(0, np.int64)
        keys = np.zeros(0, dtype=np.str_)
        report = cluster_report(documents, keys, empty, np.zeros(0), (candidates, 0), _verification(mh), mh)
        return {}, report
    pairs = pa.concat_tables(tables).combine_chunks()
    lo_order, hi_order = pairs.column("lo_order").to_numpy(), pairs.column("hi_order").to_numpy()
    orders, first, codes = np.unique(np.concatenate([lo_order, hi_order]), return_index=True, return_inverse=True)
    ids = np.concatenate([pairs.column("lo").to_numpy(zero_copy_only=False),
                          pairs.column("hi").to_numpy(zero_copy_only=False)]).astype(str)[first]  # fmt: skip
    ranks = np.concatenate([pairs.column("lo_rank").to_numpy(), pairs.column("hi_rank").to_numpy()])[first]
    priority = np.lexsort((orders, ranks))  # the local index's keep order: rank, then input order
    position = np.empty_like(priority)
    position[priority] = np.arange(len(priority))
    lo, hi = position[codes[: len(pairs)]], position[codes[len(pairs) :]]
    similarity = pairs.column("similarity").to_numpy()
    keys = ids[priority]
    rep = representatives(len(keys), lo, hi)
    rep_similarity = rep_similarities(len(keys), lo, hi, similarity, rep)
    report = cluster_report(documents, keys, rep, rep_similarity, (candidates, len(pairs)), _verification(mh), mh)
    members = np.bincount(rep, minlength=len(rep))
    inside = np.flatnonzero(members[rep] > 1)
    return dict(zip(keys[inside].tolist(), keys[rep[inside]].tolist(), strict=True)), report


def _verification(mh: MinHashParams) -> str:
    return "signature" if mh.verify else "none"


def near_duplicates(ds: Dataset, params: NearDedupParams, buckets: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Which kept document each near-duplicate belongs to, and the step's report (as the local step makes them).

    `ds` holds the rows `with_observation` gave near_dedup's MinHash signature and keep rank.

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
    sigs = _projected(ds, ["id", SIGNATURE, SKETCH, RANK, "_order"]).map_batches(
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
    scored = (
        sigs.union(half)
        .groupby("bucket")
        .map_groups(partial(_similarity, num_perm=num_perm, mh=mh), batch_format="pyarrow")
    )
    verified = scored.materialize()
    labels, report = _clusters_here(verified, mh, documents=sigs.count(), candidates=half.count())
    missing = 0 if params.keep == "first" else int(sigs.map_batches(_missing, batch_format="pyarrow").sum("n") or 0)
    keep = {"policy": params.keep_label(), "records_without_value": missing}
    return labels, {**report, "keep": keep, "s_curve": [[round(s, 2), round(p, 4)] for s, p in mh.s_curve()]}


def _missing(table: pa.Table) -> pa.Table:
    """How many rows of this batch have no keep value (rank +inf), as a one-row table."""
    return pa.table({"n": [int(np.isinf(table.column("node_rank").to_numpy()).sum())]})


def _with_null_sig(table: pa.Table, *, num_perm: int) -> pa.Table:
    """Pair rows in the signature rows' schema (null signature), so the two can be shuffled together."""
    sig_type = pa.list_(pa.uint32(), num_perm)
    table = table.append_column("sig", pa.nulls(table.num_rows, sig_type))
    table = table.append_column("sketch", pa.nulls(table.num_rows, pa.large_list(pa.uint32())))
    return table.select(["bucket", "node", "other", "sig", "sketch", *_RANKS])
