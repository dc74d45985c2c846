from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader, PdfWriter
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from keel.core.errors import InputError
from keel.curate._problems import Problem, ProblemReason
from keel.curate._web_readers import (
    DEFAULT_EXTRACTOR,
    EXTRACTORS,
    MAX_HTML_BYTES,
    Extractor,
    WebProblemReason,
    decode_html,
    detect_web_format,
    extract_html,
    read_html_file,
    read_pdf_file,
    read_warc_file,
    read_web_file,
)
from keel.data._records import record_id, records_to_table

FIXTURES = Path(__file__).parents[3] / "benchmarks" / "data" / "html"
WARC_DATE = "2024-03-01T12:00:00Z"
PROSE = (
    "The committee met on Tuesday to review the harbour budget, and agreed after a long debate to repair "
    "the north pier before the summer season begins."
)


def _split(items: list[dict[str, Any] | Problem]) -> tuple[list[dict[str, Any]], list[Problem]]:
    records = [i for i in items if not isinstance(i, Problem)]
    return records, [i for i in items if isinstance(i, Problem)]


def _only_record(items: list[dict[str, Any] | Problem]) -> dict[str, Any]:
    records, problems = _split(items)
    assert problems == [] and len(records) == 1
    return records[0]


def _only_problem(items: list[dict[str, Any] | Problem]) -> Problem:
    records, problems = _split(items)
    assert records == [] and len(problems) == 1
    return problems[0]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.html", "html"), ("A.HTM", "html"), ("x.warc", "warc"), ("CC-1.warc.gz", "warc"), ("p.pdf", "pdf")]
    + [("a.jsonl", None), ("a.gz", None), ("warc", None)],
)
def test_web_formats_are_detected_by_suffix(name: str, fmt: str | None) -> None:
    assert detect_web_format(Path(name)) == fmt


# --- HTML ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_main_text_is_kept_and_boilerplate_removed(extractor: Extractor) -> None:
    record = _only_record(list(read_html_file(FIXTURES / "article.html", extractor)))
    text = record["text"]
    assert "found a second life as a public library" in text
    assert "drier here than they were in the old building on Mill Street" in text
    for boilerplate in ("Privacy policy", "All rights reserved", "Get 50% off", "Most read", "Sign up", "Subscribe"):
        assert boilerplate not in text
    meta = json.loads(record["meta"])
    assert meta == {
        "format": "html",
        "filename": "article.html",
        "title": "Harbour town turns old ferry into floating library | The Coastal Ledger",
        "html_lang": "en-GB",
        "encoding": "utf-8/meta",
        "extractor": extractor,
    }
    assert record["source"]["uri"] == (FIXTURES / "article.html").resolve().as_uri()


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_a_cookie_banner_is_not_main_text(extractor: Extractor) -> None:
    text = _only_record(list(read_html_file(FIXTURES / "cookie_banner.html", extractor)))["text"]
    assert "Choose a pot only five centimetres wider" in text
    assert "847 partners" not in text and "Accept all" not in text and "Never miss a plant tip" not in text


def test_a_latin1_page_is_decoded_by_its_meta_charset(tmp_path: Path) -> None:
    page = tmp_path / "menu.html"
    html = (
        '<html lang="fr"><head><meta charset="ISO-8859-1"><title>Café</title></head>'
        f"<body><article><p>Crème brûlée at the café, “quoted”. {PROSE}</p></article></body></html>"
    )
    page.write_bytes(html.encode("cp1252"))  # é is 0xE9, the curly quotes 0x93/0x94
    record = _only_record(list(read_html_file(page)))
    # WHATWG maps the iso-8859-1 label to windows-1252, so the 0x93/0x94 smart quotes survive too.
    assert "Crème brûlée at the café, “quoted”." in record["text"]
    meta = json.loads(record["meta"])
    assert (meta["encoding"], meta["title"], meta["html_lang"]) == ("cp1252/meta", "Café", "fr")


def test_decoding_order_bom_then_valid_utf8_then_declared_then_nearly_utf8_then_detection() -> None:
    utf8_labelled_latin1 = b'<meta charset="latin1"><p>caf\xc3\xa9</p>'
    assert decode_html(b"\xef\xbb\xbf<p>caf\xc3\xa9</p>") == ("<p>café</p>", "utf-8/bom")
    assert decode_html(utf8_labelled_latin1) == ('<meta charset="latin1"><p>café</p>', "utf-8/valid")
    assert decode_html(b"<p>caf\xc3\xa9</p>", "UTF8") == ("<p>café</p>", "utf-8/http")
    assert decode_html(b'<meta charset="latin1"><p>caf\xe9</p>', "windows-1252")[1] == "cp1252/http"
    # Declared UTF-8 but really windows-1252: every strict decode fails and detection takes over.
    text, encoding = decode_html(b"<p>Stra\xdfe und Gr\xfc\xdfe aus M\xfcnchen, sch\xf6ne Gr\xfc\xdfe</p>", "utf-8")
    assert "Straße und Grüße aus München" in text and encoding == "cp1252/detected"
    # A stray invalid byte in a UTF-8 page does not cost the page, nor turn it into mojibake.
    text, encoding = decode_html("<p>é</p>".encode() * 500 + b"\xff")
    assert encoding == "utf-8/mostly-valid" and text.startswith("<p>é</p>") and text.endswith("\ufffd")


def test_binary_bytes_in_an_html_file_are_undecodable(tmp_path: Path) -> None:
    page = tmp_path / "logo.html"
    page.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    problem = _only_problem(list(read_html_file(page)))
    assert problem.reason == ProblemReason.UNDECODABLE and "binary" in problem.detail
    assert problem.to_json()["reason"] == "undecodable"


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_a_page_without_main_text_is_an_empty_document(tmp_path: Path, extractor: Extractor) -> None:
    page = tmp_path / "empty.html"
    page.write_text("<html><head><title>Loading</title><script>var app = 1;</script></head><body></body></html>")
    problem = _only_problem(list(read_html_file(page, extractor)))
    assert problem.reason == ProblemReason.EMPTY_DOCUMENT and problem.line is None
    assert problem.file == page.resolve().as_uri()


def test_a_missing_file_is_a_problem_and_an_unknown_extractor_an_error(tmp_path: Path) -> None:
    problem = _only_problem(list(read_html_file(tmp_path / "gone.html")))
    assert problem.reason == ProblemReason.UNREADABLE_FILE
    with pytest.raises(InputError, match="expected an HTML extractor in trafilatura, resiliparse; got 'bs4'"):
        read_html_file(tmp_path / "gone.html", "bs4")  # type: ignore[arg-type]  # raised at the call, not on iteration
    with pytest.raises(InputError, match="got 'docx'"):
        read_web_file(tmp_path / "a.docx", "docx")  # type: ignore[arg-type]


def test_extract_html_gives_text_title_and_lang() -> None:
    html = (
        f'<html lang="de"><head><title> Ein   Titel </title></head><body><nav>Start</nav><p>{PROSE}</p></body></html>'
    )
    page = extract_html(html)
    assert (page.title, page.html_lang) == ("Ein Titel", "de") and PROSE in page.text
    assert DEFAULT_EXTRACTOR in EXTRACTORS


# --- WARC ---------------------------------------------------------------------------------------------------


def _html(title: str) -> bytes:
    head = f"<html lang='en'><head><title>{title}</title></head>"
    return f"{head}<body><nav>Home About</nav><p>{PROSE}</p></body></html>".encode()


def _write_warc(path: Path, garbage: bool = True) -> None:
    def response(writer: WARCWriter, uri: str, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
        record = writer.create_warc_record(
            uri, "response", io.BytesIO(body), len(body), http_headers=http, warc_headers_dict={"WARC-Date": WARC_DATE}
        )
        writer.write_record(record)

    with path.open("wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test"}))
        request = StatusAndHeaders("GET /a HTTP/1.1", [("Host", "ex.org")], is_http_request=True)
        writer.write_record(writer.create_warc_record("https://ex.org/a", "request", http_headers=request))
        response(writer, "https://ex.org/a", "200 OK", [("Content-Type", "text/html; charset=utf-8")], _html("A"))
        response(writer, "https://ex.org/gone", "404 Not Found", [("Content-Type", "text/html")], _html("404"))
        response(writer, "https://ex.org/logo.png", "200 OK", [("Content-Type", "image/png")], b"\x89PNG\r\n\x1a\n")
        squeezed = gzip.compress(_html("B"), mtime=0)
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(squeezed), squeezed)
        encodings = [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")]
        response(writer, "https://ex.org/b", "200 OK", encodings, chunked)
        response(writer, "https://ex.org/untyped", "200 OK", [], b"<!DOCTYPE html>" + _html("C"))
        revisit = writer.create_revisit_record("https://ex.org/a", "sha1:AAAA", "https://ex.org/a", WARC_DATE)
        writer.write_record(revisit)
    if garbage:
        with path.open("ab") as stream:
            stream.write(b"\x1f\x8b\x08\x00garbage after the last record")


def test_warc_html_responses_become_records_and_every_other_capture_a_problem(tmp_path: Path) -> None:
    warc = tmp_path / "crawl.warc.gz"
    _write_warc(warc)
    records, problems = _split(list(read_warc_file(warc)))
    assert [r["source"]["uri"] for r in records] == ["https://ex.org/a", "https://ex.org/b", "https://ex.org/untyped"]
    assert all(PROSE in r["text"] and "Home About" not in r["text"] for r in records)
    assert {r["source"]["fetched_at"] for r in records} == {datetime(2024, 3, 1, 12, tzinfo=UTC)}
    meta = json.loads(records[0]["meta"])
    assert meta["http_status"] == 200 and meta["content_type"] == "text/html; charset=utf-8"
    assert (meta["format"], meta["title"], meta["encoding"]) == ("warc", "A", "utf-8/http")
    assert meta["warc_record_id"].startswith("<urn:uuid:") and meta["warc_file"] == warc.resolve().as_uri()
    assert [(p.line, str(p.reason)) for p in problems] == [
        (4, "http_status"),
        (5, "not_html"),
        (8, "unsupported_warc_record"),
        (9, "corrupt_archive"),
    ]
    assert "HTTP 404" in problems[0].detail and "https://ex.org/gone" in problems[0].detail
    assert "'image/png'" in problems[1].detail and problems[2].detail.startswith("revisit record")
    assert all(p.file == warc.resolve().as_uri() for p in problems)
    assert records_to_table(records).num_rows == 3


def test_warc_record_ids_are_stable_and_keyed_on_the_warc_record_id(tmp_path: Path) -> None:
    from warcio.archiveiterator import ArchiveIterator

    warc = tmp_path / "crawl.warc.gz"
    _write_warc(warc, garbage=False)
    first, _ = _split(list(read_warc_file(warc, "trafilatura")))
    again, _ = _split(list(read_warc_file(warc, "resiliparse")))
    assert [r["id"] for r in first] == [r["id"] for r in again]  # ids hash the payload, not the extraction
    with warc.open("rb") as stream:
        ids = [r.rec_headers.get_header("WARC-Record-ID") for r in ArchiveIterator(stream) if r.rec_type == "response"]
    assert first[0]["id"] == record_id("https://ex.org/a", ids[0], first[0]["source"]["sha256"])


def _raw_record(kind: str, number: int, content_type: str, block: bytes, date: str | None = WARC_DATE) -> bytes:
    """One WARC record written by hand, to get the malformed ones no writer library produces."""
    headers = [("WARC-Type", kind), ("WARC-Record-ID", f"<urn:test:{number}>")]
    headers += [("WARC-Date", date)] if date else []
    headers += [("WARC-Target-URI", f"https://ex.org/{number}"), ("Content-Type", content_type)]
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + f"Content-Length: {len(block)}\r\n\r\n"
    return head.encode() + block + b"\r\n\r\n"


def test_hand_written_warc_edge_cases(tmp_path: Path) -> None:
    http = "application/http; msgtype=response"
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
    bomb = gzip.compress(b"<p>" + b"a" * MAX_HTML_BYTES, compresslevel=1)
    warc = tmp_path / "edge.warc"
    warc.write_bytes(
        _raw_record("response", 1, http, b"NOT HTTP AT ALL\r\n\r\n" + _html("1"))
        + _raw_record("response", 2, http, ok + b"\r\n" + _html("2"), date=None)
        + _raw_record("resource", 3, "text/html", _html("3"))
        + _raw_record("response", 4, http, ok + b"Content-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00not gzip")
        + _raw_record("response", 5, http, ok + b"Content-Encoding: br\r\n\r\n\x0b\x02\x80")
        + _raw_record("response", 6, "text/dns", b"20240301120000\nex.org. 300 IN A 192.0.2.1\n")
        + _raw_record("conversion", 7, "text/plain", b"converted text")
        + _raw_record("response", 8, http, ok + b"Content-Encoding: gzip\r\n\r\n" + _html("8"))  # already inflated
        + _raw_record("response", 9, http, ok + b"Transfer-Encoding: chunked\r\n\r\n" + _html("9"))  # de-chunked
        + _raw_record("response", 10, http, ok + b"Content-Encoding: gzip\r\n\r\n" + bomb)
        + _raw_record("response", 11, http, ok + b"\r\n<html><body><script>x=1</script></body></html>")
    )
    records, problems = _split(list(read_warc_file(warc)))
    assert [r["source"]["uri"] for r in records] == [f"https://ex.org/{n}" for n in (2, 3, 8, 9)]
    assert records[0]["source"]["fetched_at"] == datetime.fromtimestamp(warc.stat().st_mtime, tz=UTC)
    assert json.loads(records[1]["meta"])["http_status"] is None  # a resource record has no HTTP layer
    assert [(p.line, str(p.reason), p.detail.split(" (")[0]) for p in problems] == [
        (1, "http_status", "no parsable HTTP status line"),
        (4, "undecodable", "incomplete gzip payload"),
        (5, "undecodable", "unsupported Content-Encoding 'br'"),
        (6, "not_html", "non-HTTP response"),
        (7, "unsupported_warc_record", "conversion record"),
        (10, "too_large", f"gzip payload inflates past {MAX_HTML_BYTES} bytes"),
        (11, "empty_document", "no main text found by trafilatura"),
    ]
    assert _only_problem(list(read_warc_file(tmp_path / "gone.warc.gz"))).reason == ProblemReason.UNREADABLE_FILE


def test_a_truncated_warc_record_is_a_problem(tmp_path: Path) -> None:
    warc = tmp_path / "cut.warc"
    with warc.open("wb") as stream:
        writer = WARCWriter(stream, gzip=False)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        page = _html("A")
        writer.write_record(
            writer.create_warc_record("https://ex.org/a", "response", io.BytesIO(page), len(page), http_headers=http)
        )
    warc.write_bytes(warc.read_bytes()[:-120])
    problem = _only_problem(list(read_warc_file(warc)))
    assert problem.reason == WebProblemReason.TRUNCATED_RECORD and problem.line == 1


# --- PDF ----------------------------------------------------------------------------------------------------


def _pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (pypdf writes no text itself)."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()]
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, line in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({line}) Tj ET".encode()
        resources = "/Resources << /Font << /F1 3 0 R >> >>"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] {resources} /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_text_of_all_pages_is_one_record(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(_pdf(["Quarterly report for the harbour board", "Page two lists the repairs"]))
    record = _only_record(list(read_pdf_file(path)))
    assert record["text"] == "Quarterly report for the harbour board\n\nPage two lists the repairs"
    meta = json.loads(record["meta"])
    assert meta == {
        "format": "pdf",
        "filename": "report.pdf",
        "pages": 2,
        "pages_with_text": 2,
        "pages_failed": 0,
        "title": None,
    }
    assert _only_record(list(read_pdf_file(path)))["id"] == record["id"]


def test_encrypted_pdfs_need_their_password_unless_it_is_empty(tmp_path: Path) -> None:
    text = _pdf(["Minutes of the meeting"])
    locked, protected = tmp_path / "locked.pdf", tmp_path / "protected.pdf"
    locked.write_bytes(_encrypted(text, "hunter2"))
    protected.write_bytes(_encrypted(text, ""))  # an owner password only: opens without asking
    assert _only_problem(list(read_pdf_file(locked))).reason == WebProblemReason.ENCRYPTED_PDF
    assert _only_record(list(read_pdf_file(protected)))["text"] == "Minutes of the meeting"


def test_broken_and_textless_pdfs_are_problems(tmp_path: Path) -> None:
    broken, scan = tmp_path / "broken.pdf", tmp_path / "scan.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    with scan.open("wb") as stream:
        writer.write(stream)
    assert _only_problem(list(read_pdf_file(broken))).reason == WebProblemReason.CORRUPT_PDF
    problem = _only_problem(list(read_web_file(scan, "pdf")))
    assert problem.reason == WebProblemReason.NO_TEXT_LAYER and "1 pages" in problem.detail


def test_html_rereads_give_the_same_ids(tmp_path: Path) -> None:
    ids = [_only_record(list(read_web_file(FIXTURES / "docs.html", "html", extractor=e)))["id"] for e in EXTRACTORS]
    again = _only_record(list(read_html_file(FIXTURES / "docs.html")))["id"]
    assert ids[0] == ids[1] == again
