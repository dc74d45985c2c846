"""Web readers: HTML files, WARC archives and PDFs become records, and every bad item a `Problem`.

HTML bytes are decoded (BOM, declared charset, UTF-8, detection), then reduced to their main text by
trafilatura or resiliparse; WARCs are read with fastwarc, PDFs with pypdf. Like `_readers`, nothing
here raises for bad data, and nothing knows about steps, engines or the quarantine file.
"""

from __future__ import annotations

import importlib
import io
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from keel.core.echo import shown
from keel.core.errors import ConfigError, InputError
from keel.curate._problems import Problem, ProblemReason, file_mtime
from keel.data._records import make_record

if TYPE_CHECKING:
    from fastwarc.warc import WarcRecord
    from pypdf import PdfReader
    from resiliparse.parse.html import HTMLTree

__all__ = [
    "DEFAULT_EXTRACTOR",
    "EXTRACTORS",
    "MAX_HTML_BYTES",
    "WEB_FORMATS",
    "Extractor",
    "HtmlDocument",
    "WebFormat",
    "WebProblemReason",
    "decode_html",
    "detect_web_format",
    "extract_html",
    "read_html_file",
    "read_pdf_file",
    "read_warc_file",
    "read_web_file",
]

WebFormat = Literal["html", "warc", "pdf"]
WEB_FORMATS: tuple[str, ...] = ("html", "warc", "pdf")
Extractor = Literal["trafilatura", "resiliparse"]
EXTRACTORS: tuple[str, ...] = ("trafilatura", "resiliparse")
# Chosen by benchmarks/html_extraction.py: highest mean F1 wins unless another extractor is within
# 0.02 F1 and at least 2x faster. On its 9 fixture pages trafilatura scored F1 0.944 (P 0.96, R 0.94)
# at ~90 docs/s, resiliparse F1 0.898 (P 0.84, R 0.98) at ~2,300 docs/s: pick resiliparse for volume.
DEFAULT_EXTRACTOR: Extractor = "trafilatura"
# Larger "pages" are data dumps or traps, not prose; this also caps what a gzip bomb can inflate to.
MAX_HTML_BYTES = 20 * 1024 * 1024

_HTML_MIMES = frozenset({"text/html", "application/xhtml+xml"})
_NOT_DOCUMENTS = frozenset({"warcinfo", "request", "metadata"})  # WARC records that never hold a page
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
# The HTML5 prescan reads 1024 bytes; pages with long inline scripts before <meta> need a little more.
_PRESCAN_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_CHARSET_PARAM = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_REQUIRED = {"trafilatura": "trafilatura", "resiliparse": "resiliparse", "warc": "fastwarc", "pdf": "pypdf"}


class WebProblemReason(StrEnum):
    """Why a web input item was quarantined, beyond the reasons `ProblemReason` already has."""

    NOT_HTML = "not_html"
    HTTP_STATUS = "http_status"
    UNSUPPORTED_RECORD = "unsupported_warc_record"
    TRUNCATED_RECORD = "truncated_record"
    CORRUPT_ARCHIVE = "corrupt_archive"
    UNPARSABLE_HTML = "unparsable_html"
    TOO_LARGE = "too_large"
    ENCRYPTED_PDF = "encrypted_pdf"
    CORRUPT_PDF = "corrupt_pdf"
    NO_TEXT_LAYER = "no_text_layer"


@dataclass(frozen=True, slots=True)
class HtmlDocument:
    """The main text of one HTML page and the hints its markup gives."""

    text: str
    title: str | None
    html_lang: str | None


@dataclass(frozen=True, slots=True)
class _Reject:
    reason: ProblemReason | WebProblemReason
    detail: str = ""


def _problem(file: str, line: int | None, reason: ProblemReason | WebProblemReason, detail: str = "") -> Problem:
    # `Problem.reason` is typed `ProblemReason`, but only `str(reason)` is ever used; both enums are StrEnums.
    return Problem(file, line, reason, detail[:300])


def detect_web_format(path: Path) -> WebFormat | None:
    """The web format of a file from its name, or None when it is not one.

    Examples:
        >>> detect_web_format(Path("crawl/CC-MAIN-0001.warc.gz")), detect_web_format(Path("a.jsonl"))
        ('warc', None)
    """
    name = path.name.lower()
    if name.endswith((".html", ".htm")):
        return "html"
    if name.endswith((".warc", ".warc.gz")):
        return "warc"
    if name.endswith(".pdf"):
        return "pdf"
    return None


def _require(feature: str) -> None:
    module = _REQUIRED[feature]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"reading {feature} needs the `{module}` package, which is not installed ({exc})",
            hint=f"pip install {module}",
        ) from exc


def _check_extractor(extractor: str) -> Extractor:
    if extractor not in EXTRACTORS:
        raise InputError(
            f"expected an HTML extractor in {', '.join(EXTRACTORS)}; got {extractor!r}",
            hint=f"leave it out to use {DEFAULT_EXTRACTOR!r}",
        )
    _require(extractor)
    _require("resiliparse")  # title, language and charset detection use it whichever extractor runs
    return cast(Extractor, extractor)


# --- decoding ---------------------------------------------------------------------------------------------


def _html5_encoding(label: str) -> str | None:
    from resiliparse.parse.encoding import map_encoding_to_html5

    # WHATWG label mapping: "iso-8859-1" and "ascii" mean windows-1252, as every browser decodes them.
    return map_encoding_to_html5(label.strip().lower(), fallback_utf8=False)


def _declared_encodings(raw: bytes, declared_charset: str | None) -> list[tuple[str, str]]:
    """(encoding, where it was declared): the transport charset, then the `<meta>` one."""
    found: list[tuple[str, str]] = []
    if declared_charset and (enc := _html5_encoding(declared_charset)):
        found.append((enc, "http"))
    if (match := _META_CHARSET.search(raw[:_PRESCAN_BYTES])) and (enc := _html5_encoding(match[1].decode("ascii"))):
        # A <meta> we could read as ASCII cannot be UTF-16; HTML5 says to use UTF-8 then.
        found.append(("utf-8" if enc.startswith("utf-16") else enc, "meta"))
    return found


def _mostly_utf8(text: str) -> bool:
    """Whether a lenient UTF-8 decode found far more valid multi-byte characters than broken bytes."""
    broken = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore")) - broken
    return broken <= max(2, len(text) // 1000) and non_ascii > 2 * broken


def decode_html(raw: bytes, declared_charset: str | None = None) -> tuple[str, str]:
    r"""Decode an HTML page's bytes: by BOM, as valid UTF-8, as declared, as nearly UTF-8, as guessed.

    Valid UTF-8 wins over a declared charset because non-ASCII text in another encoding is almost never
    valid UTF-8, while pages labelled latin-1 but written in UTF-8 are common in crawls. Then the
    transport charset (HTTP `Content-Type`) and the `<meta>` charset are tried strictly, then UTF-8
    with a few broken bytes, then a statistical guess, leniently if need be.

    Args:
        raw: The page's bytes.
        declared_charset: The charset the server declared, if any.

    Returns:
        The text and `encoding/source`, e.g. `"cp1252/meta"`.

    Raises:
        InputError: The bytes are binary (NUL bytes without a UTF-16 BOM) or no encoding fits.

    Examples:
        >>> decode_html(b'<meta charset="latin1"><p>caf\xe9</p>')
        ('<meta charset="latin1"><p>café</p>', 'cp1252/meta')
    """
    from resiliparse.parse.encoding import detect_encoding

    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom) :].decode(encoding, errors="replace"), f"{encoding}/bom"
    if b"\x00" in raw[:_PRESCAN_BYTES]:
        raise InputError("expected HTML text, found binary data (NUL bytes and no UTF-16 byte-order mark)")
    declared = _declared_encodings(raw, declared_charset)
    candidates = [("utf-8", next((src for enc, src in declared if enc == "utf-8"), "valid")), *declared]
    for encoding, source in candidates:
        try:
            return raw.decode(encoding), f"{encoding}/{source}"
        except (UnicodeDecodeError, LookupError):
            continue
    if _mostly_utf8(text := raw.decode("utf-8", errors="replace")):
        return text, "utf-8/mostly-valid"
    encoding = detect_encoding(raw) or "cp1252"
    text = raw.decode(encoding, errors="replace")
    if text.count("\ufffd") <= max(2, len(text) // 1000):
        return text, f"{encoding}/detected"
    tried = ", ".join(f"{enc} ({src})" for enc, src in [*candidates, (encoding, "detected")])
    raise InputError(f"expected HTML in a known encoding; none of {tried} decodes these bytes")


# --- extraction -------------------------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    value = _SPACES.sub(" ", value or "").strip()
    return value[:500] or None


def _page_hints(tree: HTMLTree) -> tuple[str | None, str | None]:
    root = tree.document.query_selector("html") if tree.document else None
    lang = (root.getattr("lang") or root.getattr("xml:lang")) if root else None
    return _clean(tree.title), _clean(lang)


def _trafilatura_text(html: str) -> str:
    import trafilatura

    # FineWeb's settings (favor_precision, no comments): mean F1 0.94 on the fixtures against 0.88 for the
    # defaults. `fast=True` (no readability/jusText fallback) halves the time but lost forum and product text.
    # deduplicate=False: trafilatura's dedup cache is process-global, which would make output order-dependent.
    return trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=False) or ""


def _resiliparse_text(tree: HTMLTree) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    # Image alt texts are captions or "photo of ..." noise far more often than prose.
    return extract_plain_text(tree, main_content=True, alt_texts=False, links=False, form_fields=False)


def extract_html(html: str, extractor: Extractor = DEFAULT_EXTRACTOR) -> HtmlDocument:
    """The main text of a page (navigation, footers, banners and ads removed), with its title and `lang`.

    Args:
        html: The page, already decoded (see `decode_html`).
        extractor: `"trafilatura"` (better boilerplate removal) or `"resiliparse"` (much faster).

    Raises:
        InputError: `extractor` is not one of `EXTRACTORS`.
        ValueError: The HTML parser gave up on the page (readers turn this into a `Problem`).

    Examples:
        >>> page = extract_html('<html lang="en"><title>T</title><nav>Home</nav><p>Long enough text.</p></html>')
        >>> page.title, page.html_lang
        ('T', 'en')
    """
    return _extract(html, _check_extractor(extractor))


def _extract(html: str, extractor: Extractor) -> HtmlDocument:
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    title, lang = _page_hints(tree)
    text = _trafilatura_text(html) if extractor == "trafilatura" else _resiliparse_text(tree)
    return HtmlDocument(text.strip(), title, lang)


def _html_parts(raw: bytes, declared_charset: str | None, extractor: Extractor) -> tuple[str, dict[str, Any]] | _Reject:
    """Decode and extract one page: its text and meta, or why it cannot be a record."""
    if len(raw) > MAX_HTML_BYTES:
        return _Reject(WebProblemReason.TOO_LARGE, f"{len(raw)} bytes > {MAX_HTML_BYTES}")
    try:
        html, encoding = decode_html(raw, declared_charset)
    except InputError as exc:
        return _Reject(ProblemReason.UNDECODABLE, exc.message)
    try:
        page = _extract(html, extractor)
    except (ValueError, RecursionError) as exc:  # lexbor/lxml give up on some malformed or absurdly deep pages
        return _Reject(WebProblemReason.UNPARSABLE_HTML, f"{type(exc).__name__}: {exc}")
    if not page.text:
        return _Reject(ProblemReason.EMPTY_DOCUMENT, f"no main text found by {extractor}")
    meta = {"title": page.title, "html_lang": page.html_lang, "encoding": encoding, "extractor": extractor}
    return page.text, meta


# --- readers ----------------------------------------------------------------------------------------------


def read_html_file(path: Path, extractor: Extractor = DEFAULT_EXTRACTOR) -> Iterator[dict[str, Any] | Problem]:
    """Yield one record for an `.html`/`.htm` file, or one `Problem` saying why there is none.

    The record's text is the page's main text; its meta holds `format`, `filename`, `title`,
    `html_lang` (the `<html lang>` hint, not a detection), `encoding` and `extractor`.

    Raises:
        InputError: `extractor` is unknown (raised at the call, before any reading).
    """
    chosen = _check_extractor(extractor)
    return _single_document(path, "html", lambda raw: _html_parts(raw, None, chosen))


def _single_document(
    path: Path, fmt: str, parse: Callable[[bytes], tuple[str, dict[str, Any]] | _Reject]
) -> Iterator[dict[str, Any] | Problem]:
    """One record (or one Problem) for a file that holds one document: an HTML page, a PDF."""
    uri = path.resolve().as_uri()
    try:
        raw, fetched = path.read_bytes(), file_mtime(path)
    except OSError as exc:
        yield _problem(uri, None, ProblemReason.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}")
        return
    parts = parse(raw)
    if isinstance(parts, _Reject):
        yield _problem(uri, None, parts.reason, parts.detail)
        return
    text, meta = parts
    yield make_record(text, uri, 0, raw, fetched, {"format": fmt, "filename": path.name, **meta})


def read_warc_file(path: Path, extractor: Extractor = DEFAULT_EXTRACTOR) -> Iterator[dict[str, Any] | Problem]:
    """Yield a record per HTML 200 response in a `.warc`/`.warc.gz`, and a `Problem` per other capture.

    `warcinfo`, `request` and `metadata` records never hold a page and are passed over. Every other
    record becomes a record or a `Problem` (`http_status`, `not_html`, `truncated_record`,
    `unsupported_warc_record` for revisits and conversions, ...); a record that cannot be parsed ends
    the file with one `corrupt_archive` Problem, since nothing after it can be located. A record's
    `source.uri` is the WARC-Target-URI, its locator the WARC-Record-ID, `fetched_at` the WARC-Date;
    `line` in Problems is the record's 1-based position in the file.

    Raises:
        InputError: `extractor` is unknown (raised at the call, before any reading).
    """
    checked = _check_extractor(extractor)
    _require("warc")
    return _iter_warc_file(path, checked)


@dataclass(frozen=True, slots=True)
class _WarcFile:
    uri: str
    mtime: datetime  # `fetched_at` for records without a usable WARC-Date
    extractor: Extractor


def _iter_warc_file(path: Path, extractor: Extractor) -> Iterator[dict[str, Any] | Problem]:
    from fastwarc.warc import ArchiveIterator

    uri = path.resolve().as_uri()
    try:
        stream = path.open("rb")
        source = _WarcFile(uri, file_mtime(path), extractor)
    except OSError as exc:
        yield _problem(uri, None, ProblemReason.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}")
        return
    position = 0
    with stream:
        try:
            # fastwarc, not warcio: 5-7x faster to iterate (benchmarks/html_extraction.py), and it raises
            # OSError on a broken header or gzip member, which becomes a Problem below.
            for position, record in enumerate(ArchiveIterator(stream, parse_http=False), start=1):
                item = _warc_item(record, source, position)
                if item is not None:
                    yield item
        except OSError as exc:  # nothing after a record that cannot be parsed can be located
            detail = f"after record {position}: {type(exc).__name__}: {exc}"
            yield _problem(uri, position + 1, WebProblemReason.CORRUPT_ARCHIVE, detail)


def _warc_item(record: WarcRecord, source: _WarcFile, position: int) -> dict[str, Any] | Problem | None:
    kind = str(record.record_type)
    if kind in _NOT_DOCUMENTS:
        return None
    target = record.headers.get("WARC-Target-URI") or ""
    record_id = record.record_id or f"{source.uri}#{record.stream_pos}"

    def problem(reason: ProblemReason | WebProblemReason, detail: str) -> Problem:
        return _problem(source.uri, position, reason, f"{detail} ({record_id} {target})")

    if kind not in ("response", "resource"):
        return problem(WebProblemReason.UNSUPPORTED_RECORD, f"{kind} record")
    payload = _warc_payload(record)
    if isinstance(payload, _Reject):
        return problem(payload.reason, payload.detail)
    body, status, content_type = payload
    parts = _html_parts(body, _charset_of(content_type), source.extractor)
    if isinstance(parts, _Reject):
        return problem(parts.reason, parts.detail)
    text, meta = parts
    meta |= {
        "format": "warc",
        "warc_file": source.uri,
        "warc_record_id": record_id,
        "warc_offset": record.stream_pos,
        "http_status": status,
        "content_type": content_type,
    }
    fetched = record.record_date or source.mtime
    made = make_record(text, target or record_id, record_id, body, fetched.replace(tzinfo=fetched.tzinfo or UTC), meta)
    made["line"] = position  # as in Problems: where a repeat of its id says the first one is
    return made


def _warc_payload(record: WarcRecord) -> tuple[bytes, int | None, str] | _Reject:
    """The decoded HTML bytes of a response/resource record, its HTTP status and content type."""
    status: int | None = None
    if str(record.record_type) == "response":
        if not record.is_http:  # e.g. Heritrix's `dns:` responses
            return _Reject(WebProblemReason.NOT_HTML, f"non-HTTP response ({record.headers.get('Content-Type')})")
        record.parse_http()
        status = record.http_headers.status_code
        if status != 200:
            return _Reject(WebProblemReason.HTTP_STATUS, f"HTTP {status}" if status else "no parsable HTTP status line")
        content_type = record.http_headers.get("Content-Type") or ""
    else:
        content_type = record.headers.get("Content-Type") or ""
    if record.content_length > MAX_HTML_BYTES:
        return _Reject(WebProblemReason.TOO_LARGE, f"{record.content_length} bytes > {MAX_HTML_BYTES}")
    mime = content_type.split(";")[0].strip().lower()
    # Read a page only once it is known to be one: skipped images and videos are never loaded.
    head = record.reader.read(512) if not mime else b""
    if mime not in _HTML_MIMES and not (not mime and _sniffs_as_html(head)):
        return _Reject(WebProblemReason.NOT_HTML, f"content type {shown(content_type or 'missing')}")
    body = head + record.reader.read()
    if len(body) < record.content_length:
        return _Reject(WebProblemReason.TRUNCATED_RECORD, f"{len(body)} of {record.content_length} bytes")
    headers = record.http_headers if status is not None else None
    decoded = _undo_http_encodings(
        body,
        (headers.get("Transfer-Encoding") or "") if headers else "",
        (headers.get("Content-Encoding") or "") if headers else "",
    )
    return decoded if isinstance(decoded, _Reject) else (decoded, status, content_type)


def _sniffs_as_html(head: bytes) -> bool:
    start = head.lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in start


def _charset_of(content_type: str) -> str | None:
    match = _CHARSET_PARAM.search(content_type)
    return match[1] if match else None


def _undo_http_encodings(body: bytes, transfer: str, content: str) -> bytes | _Reject:
    transfer, content = transfer.strip().lower(), content.strip().lower()
    if transfer == "chunked":
        # Like warcio: some archivers de-chunk the payload but keep the header, so bytes that do not
        # parse as chunks are taken as they are.
        body = _dechunk(body) or body
    if content in ("", "identity"):
        return body
    if content not in ("gzip", "x-gzip", "deflate"):
        return _Reject(ProblemReason.UNDECODABLE, f"unsupported Content-Encoding {shown(content)}")
    if content != "deflate" and not body.startswith(b"\x1f\x8b"):
        return body  # already decompressed by the archiver, header left behind
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32 if content != "deflate" else zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, MAX_HTML_BYTES + 1)
    except zlib.error as exc:
        return _Reject(ProblemReason.UNDECODABLE, f"bad {content} payload: {exc}")
    if not inflater.eof and len(inflated) <= MAX_HTML_BYTES:
        return _Reject(ProblemReason.UNDECODABLE, f"incomplete {content} payload ({len(inflated)} bytes inflated)")
    if len(inflated) > MAX_HTML_BYTES:
        return _Reject(WebProblemReason.TOO_LARGE, f"{content} payload inflates past {MAX_HTML_BYTES} bytes")
    return inflated


def _dechunk(body: bytes) -> bytes | None:
    """HTTP/1.1 chunked transfer coding undone, or None if `body` is not chunked."""
    chunks: list[bytes] = []
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return None
        try:
            size = int(body[pos:end].split(b";")[0].strip(), 16)
        except ValueError:
            return None
        if size == 0:
            return b"".join(chunks)
        chunk = body[end + 2 : end + 2 + size]
        if len(chunk) < size:
            return None
        chunks.append(chunk)
        pos = end + 2 + size + 2


# --- PDF --------------------------------------------------------------------------------------------------


def read_pdf_file(path: Path) -> Iterator[dict[str, Any] | Problem]:
    """Yield one record with the text of every page of a PDF, or one `Problem` saying why there is none.

    Pages are joined by blank lines; meta holds `format`, `filename`, `pages`, `pages_with_text`,
    `pages_failed` and the document `title` if it has one. PDFs that open with the empty password
    (owner-password-only "protected" files) are read; others are `encrypted_pdf`. A PDF without any
    text layer (a scan) is `no_text_layer`: it needs OCR, which this reader does not do.
    """
    _require("pdf")
    return _single_document(path, "pdf", _pdf_parts)


def _pdf_failures() -> tuple[type[BaseException], ...]:
    from pypdf.errors import PyPdfError

    # pypdf mostly raises its own errors on malformed files, but a wrongly typed object deep in the file
    # surfaces as a builtin one: 1,500 mutated PDFs raised PyPdfError subclasses and AttributeError;
    # the other builtins are what its dictionary, array and stream lookups raise on bad objects.
    return (PyPdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError, zlib.error)


def _pdf_parts(raw: bytes) -> tuple[str, dict[str, Any]] | _Reject:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    failures = _pdf_failures()
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            return _Reject(WebProblemReason.ENCRYPTED_PDF, "needs a password")
        count = len(reader.pages)
        texts, failed = _page_texts(reader, count, failures)
        title = _clean(reader.metadata.title if reader.metadata else None)
    except (FileNotDecryptedError, DependencyError) as exc:  # DependencyError: AES without `cryptography`
        return _Reject(WebProblemReason.ENCRYPTED_PDF, f"{type(exc).__name__}: {exc}")
    except failures as exc:
        return _Reject(WebProblemReason.CORRUPT_PDF, f"{type(exc).__name__}: {exc}")
    if failed == count and count:
        return _Reject(WebProblemReason.CORRUPT_PDF, f"text extraction failed on all {count} pages")
    text = "\n\n".join(t for t in texts if t)
    if not text:
        return _Reject(WebProblemReason.NO_TEXT_LAYER, f"no extractable text on {count} pages (scanned? needs OCR)")
    meta = {"pages": count, "pages_with_text": sum(1 for t in texts if t), "pages_failed": failed, "title": title}
    return text, meta


def _page_texts(reader: PdfReader, count: int, failures: tuple[type[BaseException], ...]) -> tuple[list[str], int]:
    """Each page's stripped text ("" where it failed or is empty), and how many pages failed."""
    texts: list[str] = []
    failed = 0
    for number in range(count):
        try:
            texts.append((reader.pages[number].extract_text() or "").strip())
        except failures:  # one bad content stream should not cost the other pages
            texts.append("")
            failed += 1
    return texts, failed


# --- dispatch ---------------------------------------------------------------------------------------------


def read_web_file(
    path: Path, fmt: WebFormat, *, extractor: Extractor = DEFAULT_EXTRACTOR
) -> Iterator[dict[str, Any] | Problem]:
    """Yield the records of one HTML, WARC or PDF file, and a `Problem` for every item that is not one.

    Args:
        path: The file.
        fmt: Its format (see `detect_web_format`).
        extractor: The main-text extractor for HTML pages (ignored for PDFs).

    Raises:
        InputError: `fmt` or `extractor` is unknown.
    """
    readers: dict[str, Callable[[], Iterator[dict[str, Any] | Problem]]] = {
        "html": lambda: read_html_file(path, extractor),
        "warc": lambda: read_warc_file(path, extractor),
        "pdf": lambda: read_pdf_file(path),
    }
    if fmt not in readers:
        raise InputError(f"expected a web format in {', '.join(WEB_FORMATS)}; got {fmt!r}")
    return readers[fmt]()
