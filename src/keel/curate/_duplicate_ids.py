"""Records that repeat an id read before them: the first in input order is kept, every later one quarantined.

Records are keyed by id in dataset versions, so two input items with one id (a source's `id_field` holding
the same value twice, the same file matched by two input globs, one WARC record in two archives) must not
both go on silently. The first occurrence in input order (input files in recipe order, lines in file order)
is processed; each later one becomes a `duplicate_id` Problem naming the id and where its first occurrence
is (file and line), quarantined and counted like any other bad item (an error with `--strict`).

Two passes, so the common case costs next to nothing:

- `first_ids_only` wraps one file's items while it is read (in a worker): a dict insert per record, and only
  for files whose ids can repeat within the file (an `id_field`, or WARC). Ids Keel derives from the file,
  line and content cannot repeat within a file.
- `quarantine_repeats_across_files` runs in the parent once every file is read (by any number of workers,
  resumed or not): it reads back the `id` column of the read shards and counts distinct ids. Only when some
  id repeats across files does it re-read the files concerned to find lines, rewrite their read shards
  without the repeats, and add the Problems to their quarantine files and markers. A resumed run finds the
  shards already without repeats, so it does nothing twice.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.core.echo import shown
from keel.curate._problems import Problem, ProblemReason
from keel.curate._readers import read_file
from keel.curate._recipe import ResolvedInput
from keel.curate._workfiles import write_bytes
from keel.data._inputs import read_parquet_file

__all__ = [
    "FileRepeats",
    "first_ids_only",
    "ids_can_repeat_across",
    "quarantine_repeats_across_files",
    "repeats_across_files",
    "without_ids",
]

Item = dict[str, Any] | Problem


def _where(uri: str, line: int | None) -> str:
    return uri if line is None else f"{uri} line {line}"


def duplicate_problem(record_id: str, uri: str, line: int | None, first_uri: str, first_line: int | None) -> Problem:
    """The Problem for a record whose id was first read at `first_uri` / `first_line`."""
    detail = f"id {shown(record_id)} was read first at {_where(first_uri, first_line)}; only the first is kept"
    return Problem(uri, line, ProblemReason.DUPLICATE_ID, detail)


def _ids_can_repeat(source: ResolvedInput) -> bool:
    return source.id_field is not None or source.format == "warc"


def ids_can_repeat_across(sources: Sequence[ResolvedInput]) -> bool:
    """Whether two input files can hold one id: some file brings its own ids, or one file is read twice.

    Ids Keel derives name their file (or, for WARC, the record), so without either the pass across files is
    skipped: it costs nothing unless it can find something.
    """
    return any(_ids_can_repeat(source) for source in sources) or len({s.path for s in sources}) < len(sources)


def first_ids_only(items: Iterator[Item | pa.Table], source: ResolvedInput) -> Iterator[Item | pa.Table]:
    """`items` of one file with each record whose id an earlier record of the file had replaced by a Problem.

    Items are records, Problems, or record tables (`keel.curate._readers.read_records` hands runs of JSON
    lines over as tables): a table's rows are checked like records, and a table holding a repeat is cut
    around it, so the records and Problems come out in file order whichever way the reader parsed them.
    """
    if not _ids_can_repeat(source):
        return items
    return _first_ids_only(items, source)


_IN_TABLE = -1  # the first occurrence was a row of a record table, which carries no line: found by re-reading


def _first_ids_only(items: Iterator[Item | pa.Table], source: ResolvedInput) -> Iterator[Item | pa.Table]:
    ids = _FirstIds(source)
    for item in items:
        if isinstance(item, pa.Table):
            yield from ids.table(item)
        elif isinstance(item, dict):
            yield ids.record(item)
        else:
            yield item


class _FirstIds:
    """The ids one file has shown so far, and where each was first (its line, or `_IN_TABLE`)."""

    def __init__(self, source: ResolvedInput) -> None:
        self.source, self.uri = source, source.path.resolve().as_uri()
        self.first: dict[str, int | None] = {}
        self.later: Counter[str] = Counter()  # occurrences after the first, so far, of ids that repeat
        self.index: dict[str, list[int | None]] | None = None  # every line of each id; only if a table repeats

    def record(self, item: dict[str, Any]) -> Item:
        before = len(self.first)
        self.first.setdefault(item["id"], item.get("line"))
        return item if len(self.first) > before else self.problem(item["id"], item.get("line"))

    def table(self, table: pa.Table) -> Iterator[Item | pa.Table]:
        ids = table.column("id").to_pylist()
        fresh = dict.fromkeys(ids, _IN_TABLE)
        if len(fresh) == len(ids) and self.first.keys().isdisjoint(fresh):  # the usual table: no id seen before
            self.first.update(fresh)  # one C-level merge instead of a setdefault per row
            yield table
            return
        repeated = []
        for row, record_id in enumerate(ids):
            before = len(self.first)
            self.first.setdefault(record_id, _IN_TABLE)
            if len(self.first) == before:
                repeated.append((row, record_id))
        if not repeated:
            yield table
            return
        start = 0
        for row, record_id in repeated:  # the rows between repeats as tables, each repeat as its Problem, in order
            if row > start:
                yield table.slice(start, row - start)
            yield self.problem(record_id, _IN_TABLE)
            start = row + 1
        if start < table.num_rows:
            yield table.slice(start)

    def problem(self, record_id: str, line: int | None) -> Problem:
        first_line = self.first[record_id]
        self.later[record_id] += 1
        if line == _IN_TABLE or first_line == _IN_TABLE:
            if self.index is None:
                self.index = _line_index(self.source)
            lines = self.index.get(record_id, [])
            first_line = lines[0] if lines else None
            if line == _IN_TABLE:
                line = lines[self.later[record_id]] if self.later[record_id] < len(lines) else None
        return duplicate_problem(record_id, self.uri, line, self.uri, first_line)


def _reread(source: ResolvedInput) -> Iterator[Item]:
    """The items of `source` line by line, each record with its `line` (to locate repeats; never on the fast path)."""
    return read_file(
        source.path,
        source.format,
        text_field=source.text_field,
        id_field=source.id_field,
        extractor=source.extractor,
        encoding=source.encoding,
    )


def _line_index(source: ResolvedInput) -> dict[str, list[int | None]]:
    """Every line of each id in `source`, in order (re-read line by line: only when a record table repeats)."""
    index: dict[str, list[int | None]] = defaultdict(list)
    for item in _reread(source):
        if isinstance(item, dict):
            index[item["id"]].append(item.get("line"))
    return index


def _file_ids(read_dir: Path, shards: Sequence[str]) -> pa.ChunkedArray:
    # ParquetFile.read, not pq.read_table: the dataset scanner behind the latter costs ~0.1 CPU-s to import and
    # start in a process that has not used it (a curation run never does: keel.data._inputs.read_parquet_file).
    tables = [pq.ParquetFile(read_dir / f"{name}.parquet").read(columns=["id"]) for name in shards]
    chunks = [chunk for table in tables for chunk in table.column("id").chunks]
    return pa.chunked_array(chunks, pa.string())


def _first_lines(source: ResolvedInput, wanted: set[str]) -> dict[str, int | None]:
    """The line of the first record of each id in `wanted` in `source` (re-read: only when ids repeat)."""
    found: dict[str, int | None] = {}
    for item in _reread(source):
        if isinstance(item, dict) and item["id"] in wanted and item["id"] not in found:
            found[item["id"]] = item.get("line")
            if len(found) == len(wanted):
                break
    return found


@dataclass(frozen=True)
class FileRepeats:
    """What one input file loses to the files before it.

    The ids to drop, their Problems (in line order), and the details of the file's own `first_ids_only`
    Problems to rename, so that a repeat names the record kept.
    """

    drop: pa.Array
    problems: list[Problem]
    renamed: dict[str, str]

    def rename(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The file's quarantine entries with these Problems added, in line order (stable: as read)."""
        for entry in entries:
            entry["detail"] = self.renamed.get(entry["detail"], entry["detail"])
        merged = [*entries, *(problem.to_json() for problem in self.problems)]
        return sorted(merged, key=lambda p: (p["line"] is None, p["line"] or 0))


def repeats_across_files(
    sources: Sequence[ResolvedInput], per_file: Sequence[pa.ChunkedArray], strict: bool
) -> dict[int, FileRepeats]:
    """What each input file holding an id an earlier file had loses; `{}` (one distinct count) when none does.

    `per_file[i]` holds file i's ids, each once. Raises the first Problem with `strict`. Shared by both
    engines, so they keep and quarantine the same records.
    """
    everything = pa.chunked_array([c for ids in per_file for c in ids.chunks], pa.string())
    if pc.count_distinct(everything).as_py() == len(everything):
        return {}  # the common case: every id is unique
    owner: dict[str, int] = {}
    repeats: dict[int, set[str]] = defaultdict(set)
    for index, ids in enumerate(per_file):
        for record_id in ids.to_pylist():
            if owner.setdefault(record_id, index) != index:
                repeats[index].add(record_id)
    wanted: dict[int, set[str]] = defaultdict(set)
    for index, ids_repeated in repeats.items():
        wanted[index] |= ids_repeated
        for record_id in ids_repeated:
            wanted[owner[record_id]].add(record_id)
    lines = {index: _first_lines(sources[index], ids) for index, ids in sorted(wanted.items())}
    uris = [source.path.resolve().as_uri() for source in sources]
    found: dict[int, FileRepeats] = {}
    for index in sorted(repeats):
        uri, renamed = uris[index], {}
        problems = []
        for record_id in repeats[index]:
            first_uri, first_line = uris[owner[record_id]], lines[owner[record_id]].get(record_id)
            problems.append(duplicate_problem(record_id, uri, lines[index].get(record_id), first_uri, first_line))
            # A repeat of the id later in this file named this file's copy as the first: name the kept one.
            mine = duplicate_problem(record_id, uri, None, uri, lines[index].get(record_id)).detail
            renamed[mine] = problems[-1].detail
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        if strict:
            raise problems[0].strict_error()
        found[index] = FileRepeats(pa.array(sorted(repeats[index]), pa.string()), problems, renamed)
    return found


def without_ids(table: pa.Table, drop: pa.Array) -> pa.Table:
    """`table` without the rows whose id is in `drop`."""
    return table.filter(pc.invert(pc.is_in(table.column("id"), value_set=drop)))


def quarantine_repeats_across_files(
    sources: Sequence[ResolvedInput],
    results: list[dict[str, Any]],
    read_dir: Path,
    strict: bool,
    write_shard: Callable[[pa.Table, Path], str],
    write_marker: Callable[[dict[str, Any], Path], None],
) -> None:
    """Quarantine each record whose id a record of an earlier input file had; update `results` in place.

    `results[i]` is file i's read marker content (`shards`, `records`, `problems`, `digests`). Each file holds
    no repeat of its own by now (`first_ids_only`), so a repeat is across files.
    """
    if len(sources) < 2 or not ids_can_repeat_across(sources):
        return
    per_file = [_file_ids(read_dir, result["shards"]) for result in results]
    for index, repeats in repeats_across_files(sources, per_file, strict).items():
        _drop_from_file(results[index], index, repeats, read_dir, write_shard, write_marker)


def _drop_from_file(
    result: dict[str, Any],
    index: int,
    repeats: FileRepeats,
    read_dir: Path,
    write_shard: Callable[[pa.Table, Path], str],
    write_marker: Callable[[dict[str, Any], Path], None],
) -> None:
    """Rewrite one file's read shards without the repeats; add them to its quarantine; update its marker.

    The marker is written last, so a run killed before it re-reads the file.
    """
    removed = 0
    for name in result["shards"]:
        path = read_dir / f"{name}.parquet"
        table = read_parquet_file(path)
        kept = without_ids(table, repeats.drop)
        if kept.num_rows != table.num_rows:
            removed += table.num_rows - kept.num_rows
            result["digests"][name] = write_shard(kept, path)
    quarantine_path = read_dir / f"{index:05d}.quarantine.jsonl"
    entries = [json.loads(line) for line in quarantine_path.read_text(encoding="utf-8").splitlines() if line]
    data = "".join(json.dumps(p, sort_keys=True) + "\n" for p in repeats.rename(entries)).encode()
    result["digests"]["quarantine"] = write_bytes(data, quarantine_path)
    result["records"] -= removed
    result["problems"] = dict(Counter(result["problems"]) + Counter({str(ProblemReason.DUPLICATE_ID): removed}))
    write_marker(result, read_dir / f"{index:05d}.done.json")
