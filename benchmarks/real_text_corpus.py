"""A real-text corpus with known near copies: Python's HTML documentation as Debian's python3-doc installs it.

Each page's main part is cut at its Sphinx `<section>`s; every section (without its sub-sections) goes
through resiliparse's HTML-to-text, and its paragraphs are grouped into documents of 30-600 words (log-uniform),
so the corpus has prose, code samples, tables and the pilcrows of real documentation. Documents whose
text repeats an earlier one exactly are left out. Then near copies are added: a third of the copies are
exact, the rest are edited (words replaced, deleted or inserted in short spans, with words drawn from the
corpus) or cut (a prefix or suffix kept, then edited) until their true word-5-gram Jaccard to their source
reaches a target drawn uniformly from 0.33-1.0. Every copy sits somewhere after its source.

    from real_text_corpus import build_corpus, load_truth
    path = build_corpus(Path("corpus"), seed=0)           # corpus/corpus.jsonl
    python benchmarks/real_text_corpus.py corpus [--seed 0] [--limit 2000]

Each JSONL line is `{"id", "text", "meta"}`; `meta` holds `page` (path under the HTML root), `section` (the
section's id), `part`, and for a copy `copy_of` (the source's id), `jaccard` (the true Jaccard, `jaccard()`
below) and `mutation` (`exact`, `edit` or `cut`); a source with a true Jaccard >= 0.5 to an earlier source
(real documentation repeats itself) has `near_of` and `near_jaccard`. Ids are hashes, unrelated to corpus
order, so a tool keeping the smallest id does not keep the source by luck. Everything follows from the
seed and the installed pages; nothing is downloaded. Needs Debian's python3-doc (.ci/run installs it).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import json
import math
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CorpusUnavailable",
    "Truth",
    "build_corpus",
    "corpus_texts",
    "html_root",
    "jaccard",
    "load_truth",
    "shingles",
]

COPY_SHARE = 0.3  # copies per source document
EXACT_SHARE = 1 / 3  # of the copies
MIN_WORDS, MAX_WORDS = 30, 600  # document length range, log-uniform
MIN_SOURCE_WORDS = 40  # copies are made of documents at least this long, so low Jaccards are reachable
NATURAL_FLOOR = 0.5  # sources this similar to an earlier source are recorded as natural near copies
_COMMON = 50  # shingles in more texts than this are boilerplate: no candidate pairs from them
SKIP_PAGES = ("genindex", "search.html", "py-modindex.html")  # generated indexes: lists of links, not text
WORD = re.compile(r"\w+")


class CorpusUnavailable(RuntimeError):
    """python3-doc's HTML is not installed here."""


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Lower-cased `\\w+` word n-grams (a text shorter than n words is one shingle): the reference shingling."""
    words = WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str, n: int = 5) -> float:
    """The true word-n-gram Jaccard of two texts under the reference shingling (1.0 for two empty texts)."""
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def html_root() -> Path:
    """The folder of python3-doc's HTML pages (where `dpkg -L python3-doc` says, symlinks resolved).

    Raises:
        CorpusUnavailable: If python3-doc is not installed.
    """
    candidates: list[Path] = []
    if shutil.which("dpkg"):
        for package in ("python3-doc", *(f"python3.{minor}-doc" for minor in range(20, 8, -1))):
            listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout.splitlines()
            candidates += [Path(p) for p in listed if p.endswith("/html")]
    candidates += sorted(Path("/usr/share/doc").glob("python3*/html"), reverse=True)
    for candidate in candidates:
        resolved = candidate.resolve()
        if (resolved / "library" / "index.html").is_file():
            return resolved
    raise CorpusUnavailable(
        "expected Python's HTML documentation from Debian's python3-doc (e.g. /usr/share/doc/python3-doc/html), "
        "found none; install it with `apt-get install python3-doc` (.ci/run does)"
    )


def _pages(root: Path) -> list[Path]:
    pages = [p for p in root.rglob("*.html*") if p.name.endswith((".html", ".html.gz"))]
    return sorted(p for p in pages if not p.name.startswith(SKIP_PAGES) and "_" not in p.relative_to(root).parts[0])


def _sections(path: Path) -> Iterator[tuple[str, str]]:
    """`(section id, plain text)` of every section of one page, each without its sub-sections."""
    import lxml.html
    from resiliparse.extract.html2text import extract_plain_text

    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    tree = lxml.html.fromstring(raw)
    main = (tree.xpath('//div[@role="main"]') or [tree])[0]
    for section in main.xpath(".//section") or [main]:
        own = copy.deepcopy(section)
        for sub in own.xpath("./section"):
            sub.drop_tree()
        html = lxml.html.tostring(own, encoding="unicode")
        text = extract_plain_text(html, preserve_formatting=True, main_content=False, alt_texts=False, links=False)
        yield str(section.get("id") or ""), text.strip()


def _documents(root: Path, rng: random.Random, limit: int | None) -> Iterator[tuple[dict[str, Any], str]]:
    """Documents in page order: each section's paragraphs grouped to a drawn length, exact repeats left out."""
    seen: set[str] = set()
    count = 0
    for page in _pages(root):
        name = str(page.relative_to(root)).removesuffix(".gz")
        for section, text in _sections(page):
            paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
            part, group, words = 0, [], 0
            target = _length(rng)
            for i, paragraph in enumerate(paragraphs):
                group.append(paragraph)
                words += len(paragraph.split())
                if words < target and i < len(paragraphs) - 1:
                    continue
                doc = "\n\n".join(group)
                group, words, target = [], 0, _length(rng)
                key = " ".join(doc.lower().split())
                if len(doc.split()) < MIN_WORDS // 3 or key in seen:
                    continue
                seen.add(key)
                yield {"page": name, "section": section, "part": part}, doc
                part += 1
                count += 1
                if limit is not None and count >= limit:
                    return


def _length(rng: random.Random) -> int:
    return int(math.exp(rng.uniform(math.log(MIN_WORDS), math.log(MAX_WORDS))))


class _Mutator:
    """Near copies of a document at a target Jaccard: a fixed random edit script, applied as far as needed."""

    def __init__(self, rng: random.Random, vocabulary: list[str]) -> None:
        self.rng = rng
        self.vocabulary = vocabulary

    def copy(self, text: str, target: float) -> tuple[str, str]:
        """`(copy, mutation)` whose Jaccard to `text` is the closest to `target` the edit script reaches."""
        if target >= 1.0:
            return text, "exact"
        paragraphs = [p.split(" ") for p in text.split("\n\n")]
        mutation = "edit"
        if self.rng.random() < 0.25:  # keep a prefix or a suffix, then edit what is left
            mutation = "cut"
            words = sum(len(p) for p in paragraphs)
            keep = max(MIN_WORDS // 3, round(words * self.rng.uniform(max(target, 0.5), 1.0)))
            flat = [(i, w) for i, p in enumerate(paragraphs) for w in p]
            flat = flat[:keep] if self.rng.random() < 0.5 else flat[-keep:]
            paragraphs = [[w for i, w in flat if i == k] for k in sorted({i for i, _ in flat})]
        script = self._script(sum(len(p) for p in paragraphs))
        lo, hi = 0, len(script)
        best = (2.0, text, mutation)
        while lo <= hi:  # bisect on how many edits of the script to apply: Jaccard falls as edits add up
            mid = (lo + hi) // 2
            candidate = self._apply(paragraphs, script[:mid])
            similarity = jaccard(text, candidate)
            if abs(similarity - target) < best[0]:
                best = (abs(similarity - target), candidate, mutation)
            if similarity > target:
                lo = mid + 1
            else:
                hi = mid - 1
        return best[1], best[2]

    def _script(self, words: int) -> list[tuple[float, int, int, list[str]]]:
        """Edits as `(relative position, span, op, new words)`: enough to take any text below Jaccard 0.3."""
        script = []
        for _ in range(max(4, words // 2)):
            span = min(8, 1 + int(self.rng.expovariate(1 / 2)))
            new = [self.rng.choice(self.vocabulary) for _ in range(span)]
            script.append((self.rng.random(), span, self.rng.randrange(3), new))
        return script

    @staticmethod
    def _apply(paragraphs: list[list[str]], script: list[tuple[float, int, int, list[str]]]) -> str:
        # Edits work on (paragraph, word) positions so paragraph breaks survive; an edit stays in its paragraph.
        out = [list(p) for p in paragraphs]
        lengths = [len(p) for p in out]
        for where, span, op, new in script:
            total = sum(lengths)
            if total <= span + 1:
                break
            at = int(where * total)
            k = 0
            while at >= lengths[k]:
                at -= lengths[k]
                k += 1
            words = out[k]
            if op == 0:
                words[at : at + span] = new
            elif op == 1 and len(words) > span:
                del words[at : at + span]
            else:
                words[at:at] = new
            lengths[k] = len(words)
        return "\n\n".join(" ".join(p) for p in out if p)


def _natural_pairs(texts: list[str], floor: float = NATURAL_FLOOR) -> dict[int, tuple[int, float]]:
    """For each text with a true Jaccard >= `floor` to an earlier one, the earlier one (highest Jaccard first).

    Real documentation repeats itself (changelog sections, "Porting to Python 3.x" paragraphs). Candidates are
    pairs sharing a shingle that at most `_COMMON` texts contain; each candidate is then measured exactly.
    """
    sets = [shingles(t) for t in texts]
    owners: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(sets):
        for shingle in s:
            owners.setdefault(shingle, []).append(i)
    shared: set[tuple[int, int]] = set()
    for group in owners.values():
        if 1 < len(group) <= _COMMON:
            shared.update((group[a], group[b]) for a in range(len(group)) for b in range(a + 1, len(group)))
    best: dict[int, tuple[int, float]] = {}
    for a, b in shared:
        if min(len(sets[a]), len(sets[b])) < floor * max(len(sets[a]), len(sets[b])):
            continue  # Jaccard <= smaller / larger set: cannot reach the floor
        similarity = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
        if similarity >= floor and (b not in best or similarity > best[b][1]):
            best[b] = (a, similarity)
    return best


def _doc_id(seed: int, kind: str, number: int) -> str:
    return "py-" + hashlib.blake2b(f"{seed}:{kind}:{number}".encode(), digest_size=6).hexdigest()


def build_corpus(out_dir: Path, *, seed: int = 0, limit: int | None = None) -> Path:
    """Write the corpus as `out_dir/corpus.jsonl` and return its path (rebuilt on every call).

    Args:
        out_dir: Folder to write into (created if missing).
        seed: Picks document lengths, which documents are copied, targets and edits.
        limit: At most this many source documents (the first ones in page order); None for all (~11,000).

    Raises:
        CorpusUnavailable: If python3-doc is not installed.
    """
    root = html_root()
    rng = random.Random(seed)
    sources = list(_documents(root, rng, limit))
    vocabulary = [w for _, text in sources[:: max(1, len(sources) // 500)] for w in text.split()]
    mutator = _Mutator(rng, vocabulary)
    ids = [_doc_id(seed, "source", i) for i in range(len(sources))]
    natural = _natural_pairs([text for _, text in sources])
    entries: list[tuple[float, str, str, dict[str, Any]]] = []
    for i, (meta, text) in enumerate(sources):
        near = {"near_of": ids[natural[i][0]], "near_jaccard": round(natural[i][1], 4)} if i in natural else {}
        entries.append((i + rng.random() * 0.5, ids[i], text, {**meta, "copy_of": None, **near}))
    copyable = [i for i, (_, text) in enumerate(sources) if len(WORD.findall(text)) >= MIN_SOURCE_WORDS]
    weights = [rng.paretovariate(1.5) for _ in copyable]  # a few documents are copied many times, most once
    for n, src in enumerate(rng.choices(copyable, weights, k=round(len(sources) * COPY_SHARE))):
        target = 1.0 if rng.random() < EXACT_SHARE else rng.uniform(0.33, 1.0)
        text, mutation = mutator.copy(sources[src][1], target)
        truth = {"copy_of": ids[src], "jaccard": round(jaccard(sources[src][1], text), 4), "mutation": mutation}
        position = src + 1 + rng.random() * (len(sources) - src)
        entries.append((position, _doc_id(seed, "copy", n), text, {**sources[src][0], **truth}))
    entries.sort(key=lambda e: e[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "corpus.jsonl"
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for _, doc_id, text, meta in entries:
            out.write(json.dumps({"id": doc_id, "text": text, "meta": meta}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


@dataclass(frozen=True, slots=True)
class Truth:
    """What a built corpus says about itself: texts by id, each copy's `(source id, true Jaccard)`, and natural
    near copies among the sources the same way (`near_of`, `near_jaccard`)."""

    order: list[str]
    texts: dict[str, str]
    copies: dict[str, tuple[str, float]]
    natural: dict[str, tuple[str, float]]

    def near(self, threshold: float) -> set[str]:
        """Ids that should go at `threshold`: planted and natural copies with true Jaccard >= `threshold`."""
        both = {**self.natural, **self.copies}
        return {doc for doc, (_, similarity) in both.items() if similarity >= threshold}

    @property
    def nbytes(self) -> int:
        """UTF-8 bytes of all texts."""
        return sum(len(t.encode()) for t in self.texts.values())


def corpus_texts(corpus: str | None, limit: int = 0) -> list[str]:
    """The `text` of every line of a JSONL file, or of a corpus built now (seed 0) into a temporary folder."""
    if corpus is None:
        corpus = str(build_corpus(Path(tempfile.mkdtemp(prefix="keel-corpus-")), seed=0, limit=limit or None))
    with open(corpus, encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines]


def load_truth(path: Path) -> Truth:
    """Read a corpus written by `build_corpus`."""
    order, texts, copies, natural = [], {}, {}, {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            doc, meta = record["id"], record["meta"]
            order.append(doc)
            texts[doc] = record["text"]
            if meta["copy_of"] is not None:
                copies[doc] = (meta["copy_of"], float(meta["jaccard"]))
            if meta.get("near_of") is not None:
                natural[doc] = (meta["near_of"], float(meta["near_jaccard"]))
    return Truth(order, texts, copies, natural)


def summary(path: Path) -> dict[str, Any]:
    """Counts for the CLI: documents, MB, copies by Jaccard bin and mutation, share with non-ASCII text."""
    truth = load_truth(path)
    bins = [0.33, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.01]
    by_bin = {f"{a:.2f}-{b:.2f}": 0 for a, b in zip(bins[:-1], bins[1:], strict=True)}
    for _, similarity in truth.copies.values():
        for a, b in zip(bins[:-1], bins[1:], strict=True):
            if a <= similarity < b or (similarity < bins[0] and a == bins[0]):
                by_bin[f"{a:.2f}-{b:.2f}"] += 1
                break
    words = sorted(len(t.split()) for t in truth.texts.values())
    return {
        "path": str(path),
        "documents": len(truth.order),
        "sources": len(truth.order) - len(truth.copies),
        "copies": len(truth.copies),
        "natural_near_copies": len(truth.natural),
        "natural_near_copies_ge_0_8": len(truth.near(0.8) - set(truth.copies)),
        "mb": round(truth.nbytes / 1e6, 2),
        "non_ascii_share": round(sum(not t.isascii() for t in truth.texts.values()) / max(1, len(truth.texts)), 3),
        "words_median": words[len(words) // 2] if words else 0,
        "copies_by_jaccard": by_bin,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="at most this many source documents")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        path = build_corpus(args.out_dir, seed=args.seed, limit=args.limit)
    except CorpusUnavailable as exc:
        sys.exit(str(exc))
    print(json.dumps({**summary(path), "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
