"""Readers: turn input files into records, and every bad item into a quarantine entry.

A reader never raises for bad data: an unparsable line, an undecodable file or an empty document
is yielded as a `Problem` with file, line and reason, which the engine counts and writes to the
quarantine file (or, with `--strict`, turns into an error). Readers know nothing of steps.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow.parquet as pq

from keel.core.errors import InputError
from keel.curate._problems import Problem, ProblemReason, file_mtime
from keel.data._records import make_record

__all__ = ["FORMATS", "InputFormat", "detect_format", "read_file"]

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


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if path.name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(path.open("rb")))
    return path.open("rb")


def _record_from_object(
    obj: Any, raw: bytes, uri: str, line: int, fetched: datetime, text_field: str, id_field: str | None
) -> dict[str, Any] | Problem:
    if not isinstance(obj, dict):
        return Problem(uri, line, ProblemReason.NOT_AN_OBJECT, type(obj).__name__)
    if text_field not in obj or obj[text_field] is None:
        return Problem(uri, line, ProblemReason.MISSING_TEXT, f"no {text_field!r} field")
    text = obj[text_field]
    if not isinstance(text, str):
        return Problem(uri, line, ProblemReason.TEXT_NOT_A_STRING, type(text).__name__)
    if not text.strip():
        return Problem(uri, line, ProblemReason.EMPTY_DOCUMENT)
    given_id = obj.get(id_field) if id_field else None
    meta = {k: v for k, v in obj.items() if k not in (text_field, id_field)}
    return make_record(text, uri, line, raw, fetched, meta, str(given_id) if given_id is not None else None)


def _read_jsonl(path: Path, text_field: str, id_field: str | None) -> Iterator[dict[str, Any] | Problem]:
    uri, fetched = path.resolve().as_uri(), file_mtime(path)
    with _open_binary(path) as stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except UnicodeDecodeError as exc:
                yield Problem(uri, number, ProblemReason.UNDECODABLE, str(exc)[:200])
                continue
            except json.JSONDecodeError as exc:
                yield Problem(uri, number, ProblemReason.INVALID_JSON, exc.msg)
                continue
            yield _record_from_object(obj, raw.rstrip(b"\r\n"), uri, number, fetched, text_field, id_field)


def _read_parquet(path: Path, text_field: str, id_field: str | None) -> Iterator[dict[str, Any] | Problem]:
    uri, fetched = path.resolve().as_uri(), file_mtime(path)
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for obj in batch.to_pylist():
            row += 1
            raw = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
            yield _record_from_object(obj, raw, uri, row, fetched, text_field, id_field)


def _read_csv(path: Path, text_field: str, id_field: str | None) -> Iterator[dict[str, Any] | Problem]:
    uri, fetched = path.resolve().as_uri(), file_mtime(path)
    delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    with _open_binary(path) as stream:
        text_stream = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
        reader = csv.DictReader(text_stream, delimiter=delimiter)
        try:
            for obj in reader:
                raw = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()
                yield _record_from_object(obj, raw, uri, reader.line_num, fetched, text_field, id_field)
        except UnicodeDecodeError as exc:
            yield Problem(uri, reader.line_num + 1, ProblemReason.UNDECODABLE, str(exc)[:200])


def _read_text_file(path: Path) -> Iterator[dict[str, Any] | Problem]:
    uri = path.resolve().as_uri()
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield Problem(uri, None, ProblemReason.UNDECODABLE, str(exc)[:200])
        return
    if not text.strip():
        yield Problem(uri, None, ProblemReason.EMPTY_DOCUMENT)
        return
    yield make_record(text, uri, 0, raw, file_mtime(path), {"filename": path.name})


def read_file(
    path: Path,
    fmt: InputFormat,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    extractor: str | None = None,
) -> Iterator[dict[str, Any] | Problem]:
    """Yield the records of one input file, and a `Problem` for every item that is not one.

    Args:
        path: The file.
        fmt: Its format (see `detect_format`).
        text_field: The field holding the document text (JSONL, Parquet, CSV).
        id_field: A field holding the source's own id, used as the record id if given.
        extractor: The HTML main-text extractor for html and warc (`trafilatura` or `resiliparse`).
    """
    if fmt in ("html", "warc", "pdf"):
        from keel.curate import _web_readers as web  # heavy parsers load only when web input is read

        yield from web.read_web_file(path, fmt, extractor=extractor or web.DEFAULT_EXTRACTOR)  # type: ignore[arg-type]
        return
    try:
        if fmt == "jsonl":
            yield from _read_jsonl(path, text_field, id_field)
        elif fmt == "parquet":
            yield from _read_parquet(path, text_field, id_field)
        elif fmt == "csv":
            yield from _read_csv(path, text_field, id_field)
        else:
            yield from _read_text_file(path)
    except (OSError, EOFError, ValueError) as exc:  # a truncated .gz, an unreadable or corrupt file
        yield Problem(
            path.resolve().as_uri(), None, ProblemReason.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}"[:300]
        )
