"""What `keel data commit` is given: Parquet and JSON-lines files (plain, .gz, .zst), read as one table.

A commit stores rows as they are, so a file holding anything that could not be read back the same
way is refused whole, naming the file, the line and what to do: bytes that are not text in the
declared encoding, numbers JSON or Arrow cannot hold exactly (`NaN`, `1e400`, integers beyond int64),
lone surrogate escapes, nesting deeper than `MAX_JSON_DEPTH`, a line longer than `MAX_LINE_BYTES`
(refused while the file is read). Curation (`keel curate run`) is the way to set such lines aside and
keep the rest. Knows nothing of versions or the store.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import zstandard

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.data._json_lines import MAX_JSON_DEPTH, SUSPECT, JsonIssue, JsonLineReason, json_line_issue
from keel.data._shards import in_shard_format

__all__ = [
    "ZstdFramesReader",
    "arrow_depth",
    "check_table",
    "open_decompressed",
    "InputFile",
    "concat_inputs",
    "read_input_files",
    "read_inputs",
    "read_jsonl_table",
    "read_parquet_file",
]

_WIDE_INTEGER = re.compile(rb"(?<![\d.eE])-?\d{16,}(?![\d.eE])")  # an integer token of 16+ digits
_CHUNK = 1 << 25  # bytes scanned per numpy pass: bounds the scan's temporary memory
_MAX_BLOCK = (1 << 31) - 1  # pyarrow's JSON block size is an int32: the longest line it can read
_FIXES = {
    JsonLineReason.TOO_DEEP: "flatten the value",
    JsonLineReason.NON_FINITE_NUMBER: "write null or a string instead",
    JsonLineReason.INTEGER_OUT_OF_RANGE: "write the integer as a string to keep it exact",
    JsonLineReason.INVALID_UNICODE: "fix the escape",
}
_CURATE_HINT = "or curate the file first (`keel curate run`), which quarantines bad lines and keeps the rest"


class ZstdFramesReader(io.RawIOBase):
    """Every zstd frame of a file, decompressed; `EOFError` when the file ends inside a frame.

    zstandard's `stream_reader` returns a truncated file's data without complaint (as many lines as
    were whole); its `decompressobj` knows whether the frame ended, so this reader is built on it.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._in_frame = False
        self._out = b""
        self._at = 0

    def readable(self) -> bool:
        """Yes."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` with decompressed bytes; 0 at the end of the last frame."""
        while self._at >= len(self._out):
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._in_frame:
                    raise EOFError("the file ends inside a zstd frame (it is truncated)")
                return 0
            self._out, self._at = self._decompress(chunk), 0
        size = min(len(buffer), len(self._out) - self._at)
        buffer[:size] = self._out[self._at : self._at + size]
        self._at += size
        return size

    def _decompress(self, chunk: bytes) -> bytes:
        parts = []
        while chunk:
            if self._frame.eof:  # the next frame of a multi-frame file
                self._frame = zstandard.ZstdDecompressor().decompressobj()
            parts.append(self._frame.decompress(chunk))
            self._in_frame = not self._frame.eof
            chunk = self._frame.unused_data if self._frame.eof else b""
        return b"".join(parts)

    def close(self) -> None:
        """Close the file too."""
        self._raw.close()
        super().close()


def open_decompressed(path: Path) -> IO[bytes]:
    """Open a file for reading, decompressing `.gz` and `.zst` by suffix; truncation raises `EOFError`."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".zst"):
        return io.BufferedReader(ZstdFramesReader(open(path, "rb")))  # noqa: SIM115 - the reader closes it
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


MAX_LINE_BYTES = 64 << 20
"""The longest JSON line (in bytes, without its newline) a commit reads; `KEEL_MAX_LINE_BYTES` overrides it."""
_READ_CHUNK = 1 << 20  # bytes read at a time while the line lengths are checked


def max_line_bytes() -> int:
    """The longest line a commit reads: `KEEL_MAX_LINE_BYTES` if set, else `MAX_LINE_BYTES`."""
    raw = os.environ.get("KEEL_MAX_LINE_BYTES", "").strip()
    if not raw:
        return MAX_LINE_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(f"expected KEEL_MAX_LINE_BYTES to be a positive number of bytes; got {shown(raw)}")
    return int(raw)


class _LineLimit:
    """Refuses a line longer than `limit` bytes as soon as the chunks fed to it show one.

    Chunks are at most `limit` bytes, so a line too long always crosses a chunk boundary: only the run
    since the last newline and the chunk's first newline need looking at (`bytes.find`, at memory speed).
    """

    def __init__(self, path: Path, limit: int, *, bom: bytes = b"") -> None:
        self.path, self.limit, self.chunk = path, limit, min(_READ_CHUNK, limit)
        self._bom = bom  # a byte-order mark `_as_utf8` drops, not counted in the first line
        self._run = 0  # bytes since the last newline
        self._cr = False  # whether the bytes fed so far end with a CR (of a CRLF newline, if a LF follows)
        self._newlines = 0

    def feed(self, chunk: bytes | memoryview) -> None:
        data = bytes(chunk) if isinstance(chunk, memoryview) else chunk
        if self._bom and not self._newlines and self._run == 0 and data.startswith(self._bom):
            self._run = -len(self._bom)
        first = data.find(b"\n")
        if first < 0:
            self._run += len(data)
            self._cr = data.endswith(b"\r")
            # One byte more may be the CR of a CRLF newline: decided when the LF comes.
            if self._run > self.limit + self._cr:
                raise self._refusal()
            return
        crlf = data[first - 1] == ord("\r") if first else self._cr  # the CR is part of the newline
        if self._run + first - crlf > self.limit:
            raise self._refusal()
        self._newlines += data.count(b"\n")
        self._run = len(data) - data.rfind(b"\n") - 1
        self._cr = data.endswith(b"\r")

    def _refusal(self) -> InputError:
        return InputError(
            f"{self.path}:{self._newlines + 1}: expected lines of at most {self.limit:,} bytes; this line is longer "
            "(is the file JSON lines, one object per line?)",
            hint="split the record, or set KEEL_MAX_LINE_BYTES=<bytes> if a line is meant to be this long",
        )


def _decompressed(path: Path, limit: _LineLimit | None = None) -> bytes:
    """The file's bytes, decompressed by suffix; a damaged or mislabelled file is an `InputError`.

    With `limit`, the file is read in chunks and a line too long is refused as soon as it is read, so a
    file without newlines fails in seconds and in memory bounded by the limit, not by the file's size.
    """
    name = path.name.lower()
    try:
        with open_decompressed(path) as stream:
            if limit is None:
                return stream.read()
            parts = []
            while chunk := stream.read(limit.chunk):
                limit.feed(chunk)
                parts.append(chunk)
            return b"".join(parts)  # peaks at twice the file, below what parsing it takes later
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
        kind = "gzip" if name.endswith(".gz") else "zstd"
        raise InputError(
            f"{path}: expected a complete {kind}-compressed file; it is truncated or not {kind} ({exc})",
            hint="re-copy or re-compress the file, or rename it if it is not compressed",
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _line_of(data: bytes, position: int) -> tuple[int, int]:
    """The 1-based line and column of a byte position."""
    line_start = data.rfind(b"\n", 0, position) + 1
    return data.count(b"\n", 0, position) + 1, position - line_start + 1


def _as_utf8(path: Path, data: bytes, encoding: str) -> bytes:
    """`data` as UTF-8: as it is (without a byte-order mark) if it claims to be UTF-8, else decoded and re-encoded.

    UTF-8 is not checked here: Arrow checks string values (`validate(full=True)`) and refuses other bytes
    while parsing, and `_utf8_error` names the byte only when a read fails, saving a decoding pass.
    """
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(
            f"expected a text encoding Python knows (utf-8, latin-1, cp1252, utf-16, …); got {shown(encoding)}"
        ) from None
    if codec == "utf-8":
        return data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    try:
        return data.decode(codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise _undecodable(path, data, exc, codec) from None


def _ascii_compatible(encoding: str) -> bool:
    """Whether `encoding` writes a newline as the byte 0x0a (UTF-8, Latin-1, cp1252…; not UTF-16).

    Where 0x0a could also be part of another character, a line would only look shorter than it is.
    """
    try:
        return "\n".encode(encoding) == b"\n"
    except (LookupError, UnicodeError):
        return False  # `_as_utf8` names the problem


def _undecodable(path: Path, data: bytes, exc: UnicodeDecodeError, codec: str) -> InputError:
    line, column = _line_of(data, exc.start)
    return InputError(
        f"{path}:{line}: expected {codec} text; byte 0x{data[exc.start]:02x} at column {column} is not {codec}",
        hint=f"pass the file's encoding (`--encoding latin-1`, `encoding:` in a recipe), {_CURATE_HINT}",
    )


def _utf8_error(path: Path, data: bytes) -> InputError | None:
    """The error naming the first byte of `data` that is not UTF-8, if there is one."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _undecodable(path, data, exc, "utf-8")
    return None


def _scan_lines(data: bytes, max_depth: int) -> tuple[np.ndarray, int, set[int]]:
    """Newline positions, the longest line's length, and lines that may nest deeper than `max_depth`.

    A line nests at most as deep as it has `[` and `{`: numpy counts them per line over fixed-size
    chunks cut at newlines, at memory speed and in bounded memory.
    """
    view = np.frombuffer(data, dtype=np.uint8)
    # 4 bytes a line, not 8, when every position fits: a file of short lines keeps one entry per line.
    position_type = np.uint32 if len(data) < 2**32 - 1 else np.int64
    newlines: list[np.ndarray] = []
    longest, deep, line, pos = 0, set[int](), 0, 0
    while pos < len(data):
        end = min(pos + _CHUNK, len(data))
        if end < len(data):
            cut = data.rfind(b"\n", pos, end)
            end = cut + 1 if cut >= pos else (data.find(b"\n", end) + 1 or len(data))
        part = view[pos:end]
        found = np.flatnonzero(part == ord("\n"))
        bounds = np.concatenate([[0], found + 1])
        if bounds[-1] != len(part):
            bounds = np.append(bounds, len(part))
        longest = max(longest, int(np.diff(bounds).max()))
        openers = np.flatnonzero((part | 0x20) == ord("{"))  # "[" is 0x5b, "{" 0x7b: only they map to 0x7b
        counts = np.diff(np.searchsorted(openers, bounds))
        deep.update((line + np.flatnonzero(counts > max_depth)).tolist())
        newlines.append((found + pos).astype(position_type))
        line += len(bounds) - 1
        pos = end
    return (np.concatenate(newlines) if newlines else np.zeros(0, position_type)), longest, deep


@dataclass(frozen=True)
class _Lines:
    """Where the lines of a JSON-lines buffer start and end, found once with numpy."""

    data: bytes
    newlines: np.ndarray

    def line(self, index: int) -> bytes:
        begin = int(self.newlines[index - 1]) + 1 if index else 0
        end = int(self.newlines[index]) if index < len(self.newlines) else len(self.data)
        return self.data[begin:end]

    def index_of(self, positions: np.ndarray) -> np.ndarray:
        """The 0-based line of each byte position."""
        return np.searchsorted(self.newlines, positions, side="left")


def _refusal(path: Path, index: int, issue: JsonIssue) -> InputError:
    return InputError(
        f"{path}:{index + 1}: cannot store this line unchanged: {issue.detail} ({issue.reason})",
        hint=f"{_FIXES[issue.reason]}, {_CURATE_HINT}",
    )


def _check_lines(path: Path, data: bytes, max_depth: int) -> tuple[_Lines, int]:
    """Refuse the first line that is not an object, or nests deeper than `max_depth`, before Arrow sees it.

    pyarrow 26 crashes the process (SIGSEGV) on a first line of `null`, turns a later `null` line into
    a record of nulls, and overflows its stack on deep nesting.

    Returns:
        The lines, and the longest line's length.
    """
    if not data or data.isspace():  # isspace() stops at the first other byte; strip() would copy
        raise InputError(f"{path}: expected JSON lines, one object per line; the file is empty")
    newlines, longest, suspects = _scan_lines(data, max_depth)
    lines = _Lines(data, newlines)
    view = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate([[0], newlines + 1])
    starts = starts[starts < len(data)]
    # Lines whose first byte is not "{": mostly blank lines, checked one by one.
    for index in np.flatnonzero(view[starts] != ord("{")).tolist():
        line = lines.line(index).strip()
        if line and not line.startswith(b"{"):
            found = line[:20].decode("utf-8", "replace") + ("…" if len(line) > 20 else "")
            raise InputError(
                f"{path}:{index + 1}: expected one JSON object per line; found {found!r}", hint=_CURATE_HINT
            )
    for index in sorted(suspects):
        issue = json_line_issue(lines.line(index), max_depth=max_depth)
        if issue is not None:
            raise _refusal(path, index, issue)
    return lines, longest


def _unusual_floats(table: pa.Table) -> bool:
    """Whether any float, however nested, is NaN, infinite or at least 2**53 in magnitude.

    Without one, no line held NaN, Infinity, an integer past int64 (Arrow reads those as floats) or an
    integer a float column rounds, so the line-by-line checks can be skipped.
    """
    todo: list[pa.Array] = [chunk for column in table.columns for chunk in column.chunks]
    while todo:
        array = todo.pop()
        kind = array.type
        if pa.types.is_floating(kind):
            # Arrow compute, not numpy: to_numpy() on a nullable array imports pandas (~0.5 s).
            small = pc.less(pc.abs(array.cast(pa.float64())), 2.0**53)  # NaN compares false too
            if pc.all(small).as_py() is False:  # nulls are skipped; all null gives None
                return True
        elif pa.types.is_list(kind):
            todo.append(array.values)  # all values, even unreferenced ones: a superset is enough
        elif pa.types.is_struct(kind):
            todo += [array.field(i) for i in range(kind.num_fields)]
    return False


def _check_numbers(path: Path, lines: _Lines, table: pa.Table, max_depth: int) -> None:
    """Refuse the first line whose numbers Arrow did not keep exactly (only run when `_unusual_floats`)."""
    positions = np.fromiter((m.start() for m in SUSPECT.finditer(lines.data)), dtype=np.int64)
    for index in np.unique(lines.index_of(positions)).tolist():
        issue = json_line_issue(lines.line(index), max_depth=max_depth)
        if issue is not None:
            raise _refusal(path, index, issue)
    # Integers past 2**53 (16 digits or more, not a float's fraction or exponent) in a float column.
    positions = np.fromiter((m.start() for m in _WIDE_INTEGER.finditer(lines.data)), dtype=np.int64)
    for index in np.unique(lines.index_of(positions)).tolist():
        if _rounded_integer(json.loads(lines.line(index)), table.schema):
            raise InputError(
                f"{path}:{index + 1}: cannot store this line unchanged: an integer beyond 2**53 is in a "
                "column that also holds fractions, where it would be rounded to a float",
                hint=f"write the integer as a string to keep it exact, {_CURATE_HINT}",
            )


def _rounded_integer(row: dict[str, Any], schema: pa.Schema) -> bool:
    """Whether an integer of `row` past 2**53 lands in a float column of `schema`."""
    todo: list[tuple[Any, pa.DataType]] = [
        (value, schema.field(key).type) for key, value in row.items() if schema.get_field_index(key) >= 0
    ]
    while todo:
        value, kind = todo.pop()
        if isinstance(value, dict) and pa.types.is_struct(kind):
            todo += [(v, kind.field(k).type) for k, v in value.items() if kind.get_field_index(k) >= 0]
        elif isinstance(value, list) and pa.types.is_list(kind):
            todo += [(v, kind.value_type) for v in value]
        elif type(value) is int and abs(value) > 2**53 and pa.types.is_floating(kind):
            return True
    return False


def _printable(text: str) -> str:
    """`text` on one line: control characters and line separators as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _explain_arrow_error(path: Path, data: bytes, exc: pa.ArrowException) -> InputError:
    """Arrow's message names neither the line nor what to do: find the line ourselves."""
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as bad:
            reason = bad.msg if isinstance(bad, json.JSONDecodeError) else str(bad)
            return InputError(f"{path}:{number}: expected one JSON object per line; {reason}", hint=_CURATE_HINT)
        if not isinstance(value, dict):
            return InputError(
                f"{path}:{number}: expected one JSON object per line; found a {type(value).__name__}",
                hint=_CURATE_HINT,
            )
    message = _printable(str(exc).removeprefix("JSON parse error: "))  # keys in it may hold line breaks
    row = re.search(r" in row (\d+)", message)
    if row:  # Arrow counts non-blank lines from 0
        numbers = [n for n, line in enumerate(lines, 1) if line.strip()]
        if int(row.group(1)) < len(numbers):
            number = numbers[int(row.group(1))]
            issue = json_line_issue(lines[number - 1])  # e.g. 1e400 or a lone surrogate: say which
            if issue is not None:
                return _refusal(path, number - 1, issue)
            message = f"line {number}: {message[: row.start()]}"
    hint = "give each field one type in every line (e.g. always a string, or always a number)"
    return InputError(
        f"{path}: could not read it as JSON lines ({message})",
        hint=hint if "changed from" in message else _CURATE_HINT,
    )


def read_jsonl_table(
    path: Path, *, encoding: str = "utf-8", max_depth: int = MAX_JSON_DEPTH, max_line: int | None = None
) -> pa.Table:
    """Read a JSON-lines file (optionally .gz or .zst) as an Arrow table, refusing what it cannot keep exact.

    Args:
        path: The file.
        encoding: The text encoding of its bytes; other encodings are converted to UTF-8.
        max_depth: The deepest nesting of arrays and objects allowed in a line.
        max_line: The longest line allowed, in bytes (default `max_line_bytes()`): a longer one is refused
            as soon as it is read, before the rest of the file is.

    Raises:
        InputError: The file is damaged, not text in `encoding`, not JSON lines, or holds a line that
            cannot be stored unchanged; the message names the line.
    """
    ascii_newlines = _ascii_compatible(encoding)
    bom = codecs.BOM_UTF8 if ascii_newlines and codecs.lookup(encoding).name == "utf-8" else b""  # `_as_utf8` drops it
    limit = _LineLimit(path, max_line_bytes() if max_line is None else max_line, bom=bom)
    if ascii_newlines:  # newlines are the byte 0x0a: check while reading
        data = _as_utf8(path, _decompressed(path, limit), encoding)
    else:  # e.g. UTF-16: check the UTF-8 text
        data = _as_utf8(path, _decompressed(path), encoding)
        view = memoryview(data)
        for start in range(0, len(data), limit.chunk):
            limit.feed(view[start : start + limit.chunk])
    lines, longest = _check_lines(path, data, max_depth)
    if longest >= _MAX_BLOCK:
        raise InputError(f"{path}: a line of {longest:,} bytes is longer than the 2 GiB one record may take")
    # Arrow parses in blocks and cannot read a record longer than one block: size it to the longest line.
    block = max(1 << 24, longest + 1)
    read_options = pajson.ReadOptions(block_size=block)
    try:
        table = pajson.read_json(pa.BufferReader(data), read_options=read_options)
        schema = _without_timestamps(table.schema)
        # Read again with the schema now known when Arrow inferred timestamps (date-like strings stay
        # strings), or built an invalid array: pyarrow 26 drops the nulls of a list that starts with null
        # before its type is known, so `[null, true]` would read back as `[true, false]`.
        if schema != table.schema or not _valid(table):
            del table  # not held beside the second read
            parse = pajson.ParseOptions(explicit_schema=schema)
            table = pajson.read_json(pa.BufferReader(data), read_options=read_options, parse_options=parse)
    except UnicodeDecodeError:  # a field name that is not UTF-8
        raise _utf8_error(path, data) or InputError(f"{path}: a field name is not UTF-8") from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _utf8_error(path, data) or _explain_arrow_error(path, data, exc) from None
    if not _valid(table):
        raise _utf8_error(path, data) or InputError(
            f"{path}: Arrow read this file into inconsistent columns; nothing was stored",
            hint="commit it as Parquet, or curate it first (`keel curate run`); please report the file to Keel",
        )
    if _unusual_floats(table):
        _check_numbers(path, lines, table, max_depth)
    _check_empty_objects(path, table.schema)
    return table


def _check_empty_objects(path: Path | str, schema: pa.Schema) -> None:
    """Refuse a field that only ever holds `{}`: Parquet cannot store an object type without fields."""
    todo = [(f.name, f.type) for f in schema]
    while todo:
        where, kind = todo.pop()
        if pa.types.is_struct(kind) and kind.num_fields == 0:
            raise InputError(
                f"{path}: field {where!r} holds only empty objects ({{}}) or null in every line; "
                "Parquet cannot store an object with no fields",
                hint="write null instead of {}, or drop the field",
            )
        if pa.types.is_list(kind):
            todo.append((f"{where}[]", kind.value_type))
        elif pa.types.is_struct(kind):
            todo += [(f"{where}.{kind.field(i).name}", kind.field(i).type) for i in range(kind.num_fields)]


def _valid(table: pa.Table) -> bool:
    try:
        table.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _as_string(kind: pa.DataType) -> pa.DataType:
    """`kind` with every timestamp, however deep, replaced by string."""
    if pa.types.is_timestamp(kind):
        return pa.string()
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_as_string(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_as_string(kind.field(i).type)) for i in range(kind.num_fields)])
    return kind


def _without_timestamps(schema: pa.Schema) -> pa.Schema:
    """The schema with strings where Arrow inferred timestamps: a commit keeps date-like strings as they were.

    Arrow's JSON reader turns "2024-01-01" into a timestamp, which would export as "2024-01-01T00:00:00"
    (and "…Z" loses its zone).
    """
    return pa.schema([f.with_type(_as_string(f.type)) for f in schema])


def values_match(source: object, stored: object) -> bool:
    """Whether a stored value equals the JSON value it was read from (absent keys read as null).

    Python compares ints with floats exactly, so 2**53 + 1 does not match the float 2**53.

    Examples:
        >>> values_match({"a": [1, 2]}, {"a": [1.0, 2.0], "b": None}), values_match(2**53 + 1, float(2**53 + 1))
        (True, False)
    """
    todo = [(source, stored)]
    while todo:  # iterative: no recursion limit
        mine, theirs = todo.pop()
        if isinstance(mine, dict) and isinstance(theirs, dict):
            todo += [(mine.get(k), theirs.get(k)) for k in mine.keys() | theirs.keys()]
        elif isinstance(mine, list) and isinstance(theirs, list):
            if len(mine) != len(theirs):
                return False
            todo += list(zip(mine, theirs, strict=True))
        elif isinstance(mine, dict | list) or isinstance(theirs, dict | list) or mine != theirs:
            return False
    return True


def arrow_depth(kind: pa.DataType) -> int:
    """How deep a type nests lists, structs and maps (a flat column is 0).

    Examples:
        >>> arrow_depth(pa.list_(pa.struct([("a", pa.list_(pa.int64()))])))
        3
    """
    deepest, todo = 0, [(kind, 0)]
    while todo:  # iterative: a type may nest deeper than Python's recursion limit
        current, depth = todo.pop()
        deepest = max(deepest, depth)
        todo += [(current.field(i).type, depth + 1) for i in range(current.num_fields)]
    return deepest


def check_table(table: pa.Table, where: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a table whose shards no Parquet reader could open: too deep, or objects with no fields.

    Looks at the schema only, so it costs nothing per row.
    """
    for schema_field in table.schema:
        depth = arrow_depth(schema_field.type) + 1
        if depth > max_depth:
            raise InputError(
                f"{where}: column {schema_field.name!r} nests {depth} levels deep; at most {max_depth} are allowed",
                hint="flatten the column (keel.data.MAX_JSON_DEPTH is the limit)",
            )
    _check_empty_objects(where, table.schema)


_DATASET_BATCH_ROWS = 131_072  # the batch size of pyarrow's dataset scanner, which `pq.read_table` uses


def read_parquet_file(path: Path | str | pa.NativeFile) -> pa.Table:
    """`pq.read_table(path)`: the same table, schema, metadata and chunks (one per row group), read directly.

    Written by hand for speed: `pq.read_table` goes through pyarrow's dataset scanner, whose first use in a
    process imports pyarrow.dataset (and pandas, unless blocked) and starts its thread pool; reading the
    file's row groups directly cost 0.02 CPU-s for three 5 MB shards against 0.135 for `pq.read_table` in a
    fresh process (0.046 later). The scanner cuts row groups of more than its batch size into batches, so
    such files (and files without row groups) are still read through it.
    """
    parquet = pq.ParquetFile(path)
    groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    if not groups or max(groups) > _DATASET_BATCH_ROWS:
        return pq.read_table(path)
    return pa.concat_tables([parquet.read_row_group(i) for i in range(len(groups))])


def _read_parquet(path: Path, max_depth: int, data: bytes | None = None) -> pa.Table:
    try:
        table = read_parquet_file(path if data is None else pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{path}: expected a Parquet file; could not read it ({exc})",
            hint="check the file is complete, or rename it if it is another format",
        ) from None
    check_table(table, str(path), max_depth)
    try:
        table.validate(full=True)  # e.g. string columns holding bytes that are not UTF-8
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: holds values Keel cannot read back ({exc})") from None
    return table


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if any(name.endswith(ext) for ext in (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson")):
        return "jsonl"
    return None


def _files_of(path: Path) -> list[Path]:
    if path.is_dir() and (path / "report.json").is_file() and (path / "data").is_dir():
        path = path / "data"  # a curation output: its records, not quarantine.jsonl or dropped/
    if path.is_dir():
        found = sorted(
            p for p in path.rglob("*") if p.is_file() and _kind(p) is not None and ".keel-work" not in p.parts
        )
        if not found:
            raise InputError(f"{path}: expected Parquet or JSONL files in this directory; found none")
        return found
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if _kind(path) is None:
        raise InputError(f"{path}: expected a .parquet, .jsonl, .jsonl.gz or .jsonl.zst file (or a directory of them)")
    return [path]


@dataclass(frozen=True)
class InputFile:
    """One input file as read: its rows, and its bytes when it is a Parquet file in the shard format."""

    path: Path
    table: pa.Table
    shard_bytes: bytes | None = None  # what a commit may store as a shard as it is (`keel.data._shards.adopt_shard`)


def _read_file(path: Path, encoding: str) -> InputFile:
    if _kind(path) != "parquet":
        return InputFile(path, read_jsonl_table(path, encoding=encoding))
    try:
        data = path.read_bytes()  # read once: the rows and the bytes a commit may adopt cannot differ
        metadata = pq.read_metadata(pa.BufferReader(data))
    except (pa.ArrowException, OSError):
        return InputFile(path, _read_parquet(path, MAX_JSON_DEPTH))  # its own error message
    table = _read_parquet(path, MAX_JSON_DEPTH, data)
    return InputFile(path, table, data if in_shard_format(metadata) else None)


def read_input_files(paths: Sequence[str | os.PathLike[str]], *, encoding: str = "utf-8") -> list[InputFile]:
    """Read Parquet and JSONL files (or directories of them, such as a curation output), file by file.

    Args:
        paths: Files and directories.
        encoding: The text encoding of the JSON-lines files.

    Returns:
        Every file's rows, in order; Parquet files in the shard format keep their bytes.
    """
    if not paths:
        raise InputError("expected at least one PATH: a Parquet or JSONL file, or a directory of them")
    return [_read_file(f, encoding) for p in paths for f in _files_of(Path(p))]


def concat_inputs(files: Sequence[InputFile]) -> pa.Table:
    """The rows of `files` as one table, in order (a column missing from a file is null there)."""
    # int64 and float64 columns merge as float64, and Arrow refuses the merge if that would round an
    # integer (beyond 2**53).
    try:
        return pa.concat_tables([f.table for f in files], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"the input files have incompatible columns: {exc}", hint="commit them separately") from None


def read_inputs(paths: Sequence[str | os.PathLike[str]], *, encoding: str = "utf-8") -> tuple[pa.Table, list[Path]]:
    """Read Parquet and JSONL files (or directories of them, such as a curation output) as one table.

    Args:
        paths: Files and directories.
        encoding: The text encoding of the JSON-lines files.

    Returns:
        The rows of every file in order, and the files read.
    """
    files = read_input_files(paths, encoding=encoding)
    return concat_inputs(files), [f.path for f in files]
