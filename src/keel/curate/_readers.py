"""Readers: turn input files into records, and every bad item into a quarantine entry.

A reader never raises for bad data: an unparsable line, an undecodable file or an empty document
is yielded as a `Problem` with file, line and reason, which the engine counts and writes to the
quarantine file (or, with `--strict`, turns into an error). Readers know nothing of steps.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import zstandard

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.curate._problems import Problem, ProblemReason, file_mtime
from keel.data._inputs import arrow_depth, open_decompressed
from keel.data._json_lines import MAX_JSON_DEPTH, json_line_issue, parsed_line_issue, unique_pairs
from keel.data._records import RECORD_SCHEMA, make_record, meta_json, record_id

__all__ = ["FORMATS", "InputFormat", "check_encoding", "detect_format", "read_file", "read_records"]

InputFormat = Literal["jsonl", "parquet", "csv", "text", "html", "warc", "pdf"]
FORMATS: tuple[str, ...] = ("jsonl", "parquet", "csv", "text", "html", "warc", "pdf")
_TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")


def detect_format(path: Path) -> InputFormat:
    """Guess a file's format from its name (compression suffixes allowed for JSONL).

    Examples:
        >>> detect_format(Path("corpus.jsonl.zst"))
        'jsonl'
    """
    from keel.curate._web_readers import detect_web_format

    web = detect_web_format(path)
    if web is not None:
        return web
    name = path.name.lower()
    for suffix in (".gz", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(_TEXT_SUFFIXES):
        return "text"
    raise InputError(
        f"cannot tell the format of {path}: expected .jsonl[.gz|.zst], .parquet, .csv, .txt/.md, "
        ".html, .warc[.gz] or .pdf",
        hint="set `format:` for this input in the recipe",
    )


def check_encoding(encoding: str) -> str:
    """The canonical name of a text encoding, or an `InputError` naming a few that exist.

    Examples:
        >>> check_encoding("Latin-1")
        'iso8859-1'
    """
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputError(
            f"expected a text encoding Python knows (utf-8, latin-1, cp1252, utf-16, …); got {shown(encoding)}"
        ) from None


def _undecodable(exc: UnicodeDecodeError, encoding: str) -> str:
    return (
        f"byte 0x{exc.object[exc.start]:02x} at column {exc.start + 1} is not {encoding}; "
        "set `encoding:` for this input if the file uses another"
    )


def _open_binary(path: Path) -> IO[bytes]:
    return open_decompressed(path)  # a truncated .gz or .zst raises EOFError: quarantined below


def _fields(
    obj: Any, uri: str, line: int, text_field: str, id_field: str | None
) -> tuple[str, str | None, dict[str, Any]] | Problem:
    """A parsed item's text, given id (as text) and other fields, or the Problem that keeps it out."""
    if not isinstance(obj, dict):
        return Problem(uri, line, ProblemReason.NOT_AN_OBJECT, type(obj).__name__)
    if text_field not in obj or obj[text_field] is None:
        return Problem(uri, line, ProblemReason.MISSING_TEXT, f"no {text_field!r} field")
    text = obj[text_field]
    if not isinstance(text, str):
        return Problem(uri, line, ProblemReason.TEXT_NOT_A_STRING, type(text).__name__)
    if not text or text.isspace():  # `not text.strip()`, without copying the text
        return Problem(uri, line, ProblemReason.EMPTY_DOCUMENT)
    given_id = obj.get(id_field) if id_field else None
    meta = {k: v for k, v in obj.items() if k not in (text_field, id_field)}
    return text, (str(given_id) if given_id is not None else None), meta


def _record_from_object(
    obj: Any, raw: bytes, uri: str, line: int, fetched: datetime, text_field: str, id_field: str | None
) -> dict[str, Any] | Problem:
    fields = _fields(obj, uri, line, text_field, id_field)
    if isinstance(fields, Problem):
        return fields
    text, given_id, meta = fields
    record = make_record(text, uri, line, raw, fetched, meta, given_id)
    record["line"] = line  # where a repeat of its id says the first one is (`_duplicate_ids`); not stored
    return record


class _Refusal(NamedTuple):
    """Why a line is not kept (never a parsed JSON value, which is never a tuple)."""

    reason: ProblemReason
    detail: str


def _json_line(raw: bytes, encoding: str) -> tuple[bytes, str] | _Refusal:
    """A line as UTF-8 bytes and as text, or why it is not text in `encoding`."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return _Refusal(ProblemReason.UNDECODABLE, _undecodable(exc, encoding))
    return (raw if encoding == "utf-8" else text.encode("utf-8")), text


# One decoder for every line: `json.loads` with a hook builds a new one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=unique_pairs)
_NOT_PLAIN_START = (b"", b"\x00", b"\xef", b"\xfe", b"\xff")  # empty, NUL, or the first byte of a byte-order mark


def _parse(line: bytes, text: str) -> Any:
    """The value of a UTF-8 JSON line (`text` decoded) that is safe to keep, or the `_Refusal` saying why not.

    Parsed first and checked on the value (`parsed_line_issue`): the same answers as checking the bytes
    first (`_parse_checked`), which only lines the parser refuses (invalid JSON, a repeated key, nesting too
    deep to parse) still take. Parsed as `json.loads(line)` parses bytes (their encoding detected, a UTF-8
    byte-order mark skipped), reusing the text already decoded when that is the same.
    """
    try:
        # json.detect_encoding says UTF-8 whenever the first byte starts no byte-order mark and neither of
        # the first two bytes is NUL: asked only otherwise (it is a tenth of the reader's time per line).
        utf8 = line[:1] not in _NOT_PLAIN_START and line[1:2] != b"\x00"
        encoding = "utf-8" if utf8 else json.detect_encoding(line)
        value = _DECODER.decode(text if encoding == "utf-8" else line.decode(encoding, "surrogatepass"))
    except (ValueError, RecursionError):  # JSONDecodeError, DuplicateKeyError, UnicodeDecodeError
        return _parse_checked(line)
    # Fields other than text and id stay JSON text in `meta`, where big integers are exact.
    issue = parsed_line_issue(line, value, max_depth=MAX_JSON_DEPTH, exact_integers=False)
    return value if issue is None else _Refusal(ProblemReason(issue.reason.value), issue.detail)


def _parse_checked(line: bytes) -> Any:
    """`_parse`, checking the bytes before parsing them (`json_line_issue`)."""
    issue = json_line_issue(line, max_depth=MAX_JSON_DEPTH, exact_integers=False)
    if issue is not None:
        return _Refusal(ProblemReason(issue.reason.value), issue.detail)
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return _Refusal(ProblemReason.INVALID_JSON, exc.msg)
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return _Refusal(ProblemReason.INVALID_JSON, str(exc)[:200])


def _read_jsonl(path: Path, text_field: str, id_field: str | None, encoding: str) -> Iterator[dict[str, Any] | Problem]:
    uri, fetched = path.resolve().as_uri(), file_mtime(path)
    with _open_binary(path) as stream:
        if "\n{".encode(encoding) == b"\n{":
            yield from _jsonl_items(stream, encoding, uri, fetched, text_field, id_field)
            return
        # UTF-16/32: lines are not cut at the byte 0x0a; decode the stream, and hand on UTF-8 lines.
        with io.TextIOWrapper(stream, encoding=encoding, newline="\n") as text:
            read = 0

            def utf8_lines() -> Iterator[bytes]:
                nonlocal read
                for line in text:
                    read += 1
                    yield line.encode("utf-8")

            try:
                yield from _jsonl_items(utf8_lines(), "utf-8", uri, fetched, text_field, id_field)
            except UnicodeError as exc:  # a stream decoder cannot skip a bad line: the rest is set aside
                reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
                detail = f"{reason} ({encoding}); set `encoding:` for this input if the file uses another"
                yield Problem(uri, read + 1, ProblemReason.UNDECODABLE, detail)


def _jsonl_items(
    lines: Iterable[bytes],
    encoding: str,
    uri: str,
    fetched: datetime,
    text_field: str,
    id_field: str | None,
    start: int = 1,
) -> Iterator[dict[str, Any] | Problem]:
    for number, raw in enumerate(lines, start=start):
        if not raw or raw.isspace():  # the same test as `not raw.strip()`, without copying the line
            continue
        line = _json_line(raw, encoding)
        obj = line if isinstance(line, _Refusal) else _parse(*line)
        if isinstance(obj, _Refusal):
            yield Problem(uri, number, obj.reason, obj.detail)
            continue
        yield _record_from_object(obj, raw.rstrip(b"\r\n"), uri, number, fetched, text_field, id_field)


def _read_parquet(path: Path, text_field: str, id_field: str | None) -> Iterator[dict[str, Any] | Problem]:
    uri, fetched = path.resolve().as_uri(), file_mtime(path)
    parquet = pq.ParquetFile(path)
    for column in parquet.schema_arrow:
        depth = arrow_depth(column.type) + 1
        if depth > MAX_JSON_DEPTH:
            detail = f"column {column.name!r} nests {depth} levels deep; at most {MAX_JSON_DEPTH} are allowed"
            yield Problem(uri, None, ProblemReason.TOO_DEEP, detail)
            return
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for obj in batch.to_pylist():
            row += 1
            try:  # the raw item is its JSON text: NaN and infinities have none
                raw = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False, allow_nan=False).encode()
            except ValueError:
                yield Problem(uri, row, ProblemReason.NON_FINITE_NUMBER, "NaN or an infinity is not a JSON number")
                continue
            yield _record_from_object(obj, raw, uri, row, fetched, text_field, id_field)


def _read_csv(path: Path, text_field: str, id_field: str | None, encoding: str) -> Iterator[dict[str, Any] | Problem]:
    uri, fetched = path.resolve().as_uri(), file_mtime(path)
    delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with _open_binary(path) as stream:
        text_stream = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
        reader = csv.DictReader(text_stream, delimiter=delimiter)
        try:
            for obj in reader:
                if None in obj:  # DictReader's key for fields beyond the header's
                    detail = f"{len(obj) - 1 + len(obj[None])} fields; the header names {len(obj) - 1}"
                    yield Problem(uri, reader.line_num, ProblemReason.TOO_MANY_FIELDS, detail)
                    continue
                raw = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()
                yield _record_from_object(obj, raw, uri, reader.line_num, fetched, text_field, id_field)
        except UnicodeDecodeError as exc:
            detail = f"{str(exc)[:200]}; set `encoding:` for this input if the file uses another"
            yield Problem(uri, reader.line_num + 1, ProblemReason.UNDECODABLE, detail)
        except csv.Error as exc:  # e.g. a quote never closed: nothing after it can be located
            detail = f"not CSV after line {reader.line_num}: {shown(str(exc))}; the rest of the file is not read"
            yield Problem(uri, reader.line_num + 1, ProblemReason.UNREADABLE_FILE, detail)


# A field may be as long as a record (a JSON line's text is not limited either); the csv module's default limit
# of 128 KiB stopped a whole run with `_csv.Error`. The limit is process-wide: raised, never lowered.
_CSV_FIELD_LIMIT = 2**31 - 1


def _read_text_file(path: Path, encoding: str) -> Iterator[dict[str, Any] | Problem]:
    uri = path.resolve().as_uri()
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        yield Problem(uri, line, ProblemReason.UNDECODABLE, _undecodable(exc, encoding).replace("column", "offset"))
        return
    if not text.strip():
        yield Problem(uri, None, ProblemReason.EMPTY_DOCUMENT)
        return
    yield make_record(text, uri, 0, raw, file_mtime(path), {"filename": path.name})


# --- JSON lines through Arrow's JSON reader ------------------------------------------------------------------

_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _surrogate_escape(chunk: bytes) -> bool:
    r"""Whether JSON text holds a \uD800-\uDFFF escape (not `\\uD800`: an escaped backslash, then text).

    Arrow decodes a pair as Python does and refuses a lone one, but which lone ones it refuses is not
    documented: pieces holding any go line by line.
    """
    for match in _MAYBE_SURROGATE.finditer(chunk):
        before = match.start()  # count the backslashes before this one
        while before and chunk[before - 1] == 0x5C:
            before -= 1
        if (match.start() - before) % 2 == 0:
            return True
    return False


_CHUNK_BYTES = 16 << 20  # JSON lines parsed at once: whole lines, at least this much unless the file ends
# The first byte of a character str.isspace() holds (the ASCII ones, "\x1c"-"\x1f", and the leading bytes of the
# others' UTF-8: keel.curate._words); a text starting with none of them is not all whitespace.
_SPACE_LEADS = np.zeros(256, dtype=np.bool_)
_SPACE_LEADS[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0xC2, 0xE1, 0xE2, 0xE3]] = True


def _line_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream in pieces of whole lines (the last one as the stream ends), about `_CHUNK_BYTES` each."""
    rest = b""
    while block := stream.read(_CHUNK_BYTES):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut:
            yield block[:cut]
        rest = block[cut:]
    if rest:
        yield rest


def _chunk_table(
    chunk: bytes, first_line: int, uri: str, fetched: datetime, text_field: str, id_field: str | None
) -> pa.Table | None:
    """The records of a piece of a UTF-8 JSON lines file parsed by Arrow, or None where `_jsonl_items` must read it.

    None unless `_jsonl_items` would read exactly these records from the piece and refuse nothing.
    Arrow's reader, told the only fields are the text and the id and both are strings, refuses every line that
    is not one flat object of those (other fields, numbers, nesting, a repeated key, invalid JSON, a NaN, a raw
    control character) by failing on the piece; what it would read otherwise than Python's `json` (bytes that
    are not UTF-8, which it keeps as they are; a lone surrogate escape) or what `_jsonl_items` treats specially
    (a NUL byte, a byte-order mark, a missing or null field, an empty or all-whitespace text, a line holding two
    objects) sends the piece there too.
    Written for speed: `read_records` read the 14,717 lines of benchmarks/curation_vs_datatrove.py into a record
    table in 0.10 CPU-s, where `read_file` and a table of its records took 0.23 (best of 5, loaded machine);
    tests/unit/curate/test_reader_tables.py checks the two give the same records and problems on hostile input.
    """
    if text_field == id_field or b"\x00" in chunk or b"\xef\xbb\xbf" in chunk or _surrogate_escape(chunk):
        return None
    fields = [pa.field(text_field, pa.string())] + ([pa.field(id_field, pa.string())] if id_field else [])
    try:
        table = pa_json.read_json(
            pa.BufferReader(chunk),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(chunk) + 1),
            parse_options=pa_json.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="error"),
        )
    except (pa.ArrowException, ValueError):  # ArrowInvalid for bad JSON, UnicodeDecodeError for bad UTF-8
        return None
    # One record per line that is not blank (bytes.isspace(), as `_jsonl_items` skips them) and no other.
    lines = [
        (number, raw) for number, raw in enumerate(chunk.split(b"\n"), start=first_line) if raw and not raw.isspace()
    ]
    if table.num_rows != len(lines):
        return None
    text = table.column(text_field).combine_chunks()
    given = table.column(id_field).combine_chunks() if id_field else None
    try:  # Arrow's JSON reader keeps the bytes of a string as they are: check they are UTF-8, as Python decodes
        for column in (text, given):
            if column is not None:
                column.validate(full=True)
    except pa.ArrowInvalid:
        return None
    if text.null_count or (given is not None and given.null_count) or _blank_texts(text):
        return None
    numbers = [number for number, _ in lines]
    raws = [raw.rstrip(b"\r\n") for _, raw in lines]
    given_ids = given.to_pylist() if given is not None else [None] * len(lines)
    return _records_table(uri, fetched, numbers, raws, given_ids, text.cast(pa.string()), ["{}"] * len(lines))


def _records_table(
    uri: str,
    fetched: datetime,
    numbers: list[int],
    raws: list[bytes],
    given_ids: list[str | None],
    texts: pa.Array | list[str],
    metas: list[str],
) -> pa.Table:
    """The record table `make_record` gives row by row (`_shard_table` of its records), built a column at a time."""
    raw_sha = [hashlib.sha256(raw).hexdigest() for raw in raws]
    # As make_record: an empty given id is replaced by the derived one.
    ids = [given or record_id(uri, number, sha) for given, number, sha in zip(given_ids, numbers, raw_sha, strict=True)]
    count = len(ids)
    source_type = RECORD_SCHEMA.field("source").type
    source = pa.StructArray.from_arrays(
        [
            pa.array([uri] * count, source_type.field("uri").type),
            pa.array(raw_sha, source_type.field("sha256").type),
            pa.array([fetched.astimezone(UTC)] * count, source_type.field("fetched_at").type),
        ],
        fields=list(source_type),
    )
    text = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
    columns = [pa.array(ids, pa.string()), text, source, pa.array(metas, pa.string())]
    return pa.Table.from_arrays(columns, schema=RECORD_SCHEMA)


def _chunk_items(
    chunk: bytes, first_line: int, uri: str, fetched: datetime, text_field: str, id_field: str | None
) -> Iterator[pa.Table | Problem]:
    """`_jsonl_items` of a piece of a UTF-8 JSON lines file, its runs of records as record tables.

    The same records and problems in the same order (the lines are parsed and checked by the same functions),
    for pieces `_chunk_table` cannot hand to Arrow, such as lines with fields besides the text and id (kept in
    `meta`). Written by hand for speed: a column per field instead of a dict per record, then one table, cut
    reading the 14,717 lines of benchmarks/curation_full_recipe.py into record tables from 0.26 to 0.19 CPU-s.
    """
    numbers: list[int] = []
    raws: list[bytes] = []
    given_ids: list[str | None] = []
    texts: list[str] = []
    metas: list[str] = []
    for number, raw in enumerate(io.BytesIO(chunk), start=first_line):  # lines cut as `_jsonl_items` cuts them
        if not raw or raw.isspace():
            continue
        line = _json_line(raw, "utf-8")
        obj = line if isinstance(line, _Refusal) else _parse(*line)
        if isinstance(obj, _Refusal):
            fields: tuple[str, str | None, dict[str, Any]] | Problem = Problem(uri, number, obj.reason, obj.detail)
        else:
            fields = _fields(obj, uri, number, text_field, id_field)
        if isinstance(fields, Problem):
            if numbers:
                yield _records_table(uri, fetched, numbers, raws, given_ids, texts, metas)
                numbers, raws, given_ids, texts, metas = [], [], [], [], []
            yield fields
            continue
        text, given_id, meta = fields
        numbers.append(number)
        raws.append(raw.rstrip(b"\r\n"))
        given_ids.append(given_id)
        texts.append(text)
        metas.append(meta_json(meta))
    if numbers:
        yield _records_table(uri, fetched, numbers, raws, given_ids, texts, metas)


def _blank_texts(text: pa.Array) -> bool:
    """Whether any text is empty or all whitespace (`str.isspace()`), which `_record_from_object` refuses."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8) if text.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, empty = offsets[:-1], offsets[1:] == offsets[:-1]
    maybe = np.flatnonzero(
        empty | _SPACE_LEADS[data[np.minimum(starts, max(len(data) - 1, 0))]] if len(data) else empty
    )
    return any(not t or t.isspace() for t in text.take(pa.array(maybe, pa.int64())).to_pylist())


def _read_jsonl_tables(
    path: Path, text_field: str, id_field: str | None
) -> Iterator[pa.Table | dict[str, Any] | Problem]:
    """`_read_jsonl` of an uncompressed UTF-8 file as record tables (and problems), a piece at a time.

    Arrow parses a piece where it reads it alike (`_chunk_table`); otherwise its lines are parsed one by one into
    record tables cut around the problems (`_chunk_items`).
    """
    uri, fetched = path.resolve().as_uri(), file_mtime(path)
    line = 1
    with open(path, "rb") as stream:
        for chunk in _line_chunks(stream):
            table = _chunk_table(chunk, line, uri, fetched, text_field, id_field)
            if table is not None:
                if table.num_rows:  # not a piece of blank lines
                    yield table
            else:
                yield from _chunk_items(chunk, line, uri, fetched, text_field, id_field)
            line += chunk.count(b"\n")


def read_records(
    path: Path,
    fmt: InputFormat,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    extractor: str | None = None,
    encoding: str = "utf-8",
) -> Iterator[pa.Table | dict[str, Any] | Problem]:
    """`read_file`, with runs of records as record tables (`keel.data._records.RECORD_SCHEMA`) where it can.

    The same records and problems in the same order: uncompressed UTF-8 JSON lines of a text (and id) field are
    parsed by Arrow a piece at a time (`_chunk_table`), other uncompressed UTF-8 JSON lines line by line into
    record tables (`_chunk_items`), everything else as `read_file` reads it.
    """
    plain_jsonl = fmt == "jsonl" and path.suffix.lower() not in (".gz", ".zst")
    if not plain_jsonl or check_encoding(encoding) != "utf-8":
        yield from read_file(
            path, fmt, text_field=text_field, id_field=id_field, extractor=extractor, encoding=encoding
        )
        return
    try:
        yield from _read_jsonl_tables(path, text_field, id_field)
    except OSError as exc:  # as read_file reports an unreadable file
        yield Problem(
            path.resolve().as_uri(), None, ProblemReason.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}"[:300]
        )


def read_file(
    path: Path,
    fmt: InputFormat,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    extractor: str | None = None,
    encoding: str = "utf-8",
) -> Iterator[dict[str, Any] | Problem]:
    """Yield the records of one input file, and a `Problem` for every item that is not one.

    A record of a JSONL, Parquet, CSV or WARC file also holds its `line` (row, WARC record position), which
    no table keeps: it locates the first record of a repeated id (`keel.curate._duplicate_ids`).

    Args:
        path: The file.
        fmt: Its format (see `detect_format`).
        text_field: The field holding the document text (JSONL, Parquet, CSV).
        id_field: A field holding the source's own id, used as the record id if given.
        extractor: The HTML main-text extractor for html and warc (`trafilatura` or `resiliparse`).
        encoding: The text encoding of JSONL, CSV and text files (web pages declare their own).
    """
    if fmt in ("html", "warc", "pdf"):
        from keel.curate import _web_readers as web  # heavy parsers load only when web input is read

        yield from web.read_web_file(path, fmt, extractor=extractor or web.DEFAULT_EXTRACTOR)  # type: ignore[arg-type]
        return
    encoding = check_encoding(encoding)
    try:
        if fmt == "jsonl":
            yield from _read_jsonl(path, text_field, id_field, encoding)
        elif fmt == "parquet":
            yield from _read_parquet(path, text_field, id_field)
        elif fmt == "csv":
            yield from _read_csv(path, text_field, id_field, encoding)
        else:
            yield from _read_text_file(path, encoding)
    # A truncated .gz or .zst, junk under a .parquet name (ArrowInvalid is a ValueError), an unreadable file.
    except (OSError, EOFError, ValueError, zstandard.ZstdError) as exc:
        yield Problem(
            path.resolve().as_uri(), None, ProblemReason.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}"[:300]
        )
