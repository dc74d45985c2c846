"""Main-text extraction quality and speed of trafilatura vs resiliparse, and WARC reading speed of fastwarc vs warcio.

Quality: each page in benchmarks/data/html/ (NAME.html) comes with the main text a person would keep
(NAME.txt). Both are lower-cased and split into word tokens (`\\w+`); precision, recall and F1 are the
multiset overlap of extracted vs expected tokens, averaged over pages (an empty extraction scores
precision 1, recall 0). Speed: decode + extract (as `read_html_file` does) over the pages repeated
`--repeat` times, in MB of HTML per second and documents per second.

Rule for the default: the highest mean F1 wins, unless another extractor is within 0.02 F1 and at least
2x faster, in which case the faster one does. The last line reports the pick and whether
`keel.curate._web_readers.DEFAULT_EXTRACTOR` agrees.

    python benchmarks/html_extraction.py [--repeat 20] [--warc-records 2000] [--per-page]

Prints one JSON line per extractor, one per WARC library and one with the choice.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from statistics import mean

from keel.curate._web_readers import DEFAULT_EXTRACTOR, EXTRACTORS, decode_html, extract_html

PAGES = Path(__file__).parent / "data" / "html"
F1_TOLERANCE = 0.02
SPEEDUP_NEEDED = 2.0
_WORDS = re.compile(r"\w+")


def load_pages() -> list[tuple[str, bytes, str]]:
    return [(p.stem, p.read_bytes(), p.with_suffix(".txt").read_text("utf-8")) for p in sorted(PAGES.glob("*.html"))]


def scores(extracted: str, expected: str) -> dict[str, float]:
    got, want = Counter(_WORDS.findall(extracted.lower())), Counter(_WORDS.findall(expected.lower()))
    overlap = sum((got & want).values())
    precision = overlap / sum(got.values()) if got else 1.0
    recall = overlap / sum(want.values()) if want else 1.0
    f1 = 2 * precision * recall / (precision + recall) if overlap else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def run_extractor(name: str, pages: list[tuple[str, bytes, str]], repeat: int, per_page: bool) -> dict:
    def extract(raw: bytes) -> str:
        html, _ = decode_html(raw)
        return extract_html(html, name).text  # type: ignore[arg-type]

    per = {stem: scores(extract(raw), expected) for stem, raw, expected in pages}  # also warms caches
    started = time.perf_counter()
    for _ in range(repeat):
        for _, raw, _ in pages:
            extract(raw)
    seconds = time.perf_counter() - started
    total_bytes = repeat * sum(len(raw) for _, raw, _ in pages)
    result = {
        "benchmark": "html_extraction",
        "extractor": name,
        "pages": len(pages),
        "docs_timed": repeat * len(pages),
        **{f"mean_{k}": round(mean(s[k] for s in per.values()), 3) for k in ("precision", "recall", "f1")},
        "min_f1": round(min(s["f1"] for s in per.values()), 3),
        "mb_per_s": round(total_bytes / seconds / 1e6, 3),
        "docs_per_s": round(repeat * len(pages) / seconds, 1),
    }
    if per_page:
        result["per_page_f1"] = {stem: round(s["f1"], 3) for stem, s in per.items()}
    return result


def choose(results: list[dict]) -> str:
    best = max(results, key=lambda r: r["mean_f1"])
    faster = [
        r
        for r in results
        if r["mean_f1"] >= best["mean_f1"] - F1_TOLERANCE and r["docs_per_s"] >= SPEEDUP_NEEDED * best["docs_per_s"]
    ]
    return max(faster, key=lambda r: r["docs_per_s"])["extractor"] if faster else best["extractor"]


def write_warc(path: Path, pages: list[tuple[str, bytes, str]], records: int) -> int:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    written = 0
    with path.open("wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        for i in range(records):
            stem, raw, _ = pages[i % len(pages)]
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            url = f"https://example.org/{i}/{stem}"
            writer.write_record(
                writer.create_warc_record(url, "response", payload=io.BytesIO(raw), http_headers=headers)
            )
            written += len(raw)
    return written


def time_warc(path: Path, library: str, payload_bytes: int, records: int) -> dict:
    started = time.perf_counter()
    seen = 0
    with path.open("rb") as stream:
        if library == "fastwarc":
            from fastwarc.warc import ArchiveIterator

            for record in ArchiveIterator(stream, parse_http=False):
                record.parse_http()
                seen += len(record.reader.read())
        else:
            from warcio.archiveiterator import ArchiveIterator as WarcioIterator

            for record in WarcioIterator(stream):
                seen += len(record.content_stream().read())
    seconds = time.perf_counter() - started
    assert seen == payload_bytes, (library, seen, payload_bytes)
    return {
        "benchmark": "warc_read",
        "library": library,
        "records": records,
        "warc_gz_bytes": path.stat().st_size,
        "records_per_s": round(records / seconds, 1),
        "payload_mb_per_s": round(payload_bytes / seconds / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed passes over the fixture pages")
    parser.add_argument("--warc-records", type=int, default=2000, help="response records in the timed WARC")
    parser.add_argument("--per-page", action="store_true", help="also print each page's F1")
    args = parser.parse_args()
    pages = load_pages()
    results = [run_extractor(name, pages, args.repeat, args.per_page) for name in EXTRACTORS]
    for result in results:
        print(json.dumps(result))
    with tempfile.TemporaryDirectory() as tmp:
        warc = Path(tmp) / "bench.warc.gz"
        payload = write_warc(warc, pages, args.warc_records)
        for library in ("fastwarc", "warcio"):
            print(json.dumps(time_warc(warc, library, payload, args.warc_records)))
    pick = choose(results)
    rule = f"highest mean F1, unless another is within {F1_TOLERANCE} F1 and >= {SPEEDUP_NEEDED}x docs/s"
    print(
        json.dumps(
            {"benchmark": "html_extraction_choice", "rule": rule, "pick": pick, "module_default": DEFAULT_EXTRACTOR}
            | {"agrees": pick == DEFAULT_EXTRACTOR}
        )
    )


if __name__ == "__main__":
    main()
