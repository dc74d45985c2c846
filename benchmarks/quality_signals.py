"""Throughput of `keel.curate._quality` and what its default rules drop, on synthetic web-like documents.

Generates documents of five kinds with a fixed seed (ordinary prose; boilerplate-heavy pages with
menus, cookie and JavaScript notices; repetitive spam; bullet lists; source code), a few KB each,
then times `quality_signal_columns` over batches (the engine's path), `quality_signals` one document
at a time, and `c4_clean_lines`. Rates are MB of UTF-8 per CPU-second of this single-threaded process.

    python benchmarks/quality_signals.py [--docs 2000] [--batch 500] [--seed 7]

Prints one JSON line: rates, the fraction of each kind dropped by `QualityThresholds()`, and each
kind's most frequent drop reasons.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from collections.abc import Callable

import pyarrow as pa

from keel.curate._quality import (
    QualityThresholds,
    c4_clean_lines,
    quality_signal_columns,
    quality_signals,
    rule_failures,
)

TARGET_MB_PER_S = 25.0

COMMON = (
    "the of and to a in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no will can more about time people year "
    "them some its only new other could also than then into over after first two most like made may these any "
    "years many very through just where before much should well because each those such between while both "
    "under never being same another during without however although around three against several often city "
    "river market history report water language model research government company music school family church "
    "village garden winter summer morning evening letter station doctor teacher student engineer farmer "
    "council museum library railway harbour valley mountain island forest bridge castle theatre hospital "
    "important different national general political public local social early later small large great "
    "ancient modern famous quiet careful sudden gentle narrow broad bright heavy simple strange familiar "
    "walked opened described remained returned followed designed measured considered discovered explained "
    "suggested remembered finished changed carried noticed wondered travelled reached gathered repaired"
).split()
NAV = ("Home", "About us", "Contact", "Login", "Register", "Shop", "Cart (0)", "Search", "Menu", "Blog", "FAQ",
       "Careers", "Share", "Tweet", "Next", "Previous", "Read more", "Subscribe", "Follow us", "Sitemap")  # fmt: skip
NOTICES = (
    "This website uses cookies to improve your experience.",
    "Please enable JavaScript in your browser to view this page.",
    "Privacy Policy | Terms of Use | Cookie Policy",
    "\u00a9 2024 Example Media Group. All rights reserved.",
    "Sign up for our newsletter",
    "Posted by admin",
    "Tags: news, updates, misc",
    "Leave a comment",
)


def _tail_words(rng: random.Random, count: int) -> list[str]:
    syllables = ("ka", "lo", "mi", "ren", "dor", "ta", "vel", "in", "os", "ur", "bre", "sta", "qui", "an", "el", "tor")
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)]


class Generator:
    """Documents of each kind, deterministic for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vocab = list(COMMON) + _tail_words(self.rng, 6000)
        self.weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(self.vocab))]

    def sentence(self) -> str:
        words = self.rng.choices(self.vocab, self.weights, k=self.rng.randint(7, 24))
        for i in range(1, len(words) - 1):
            if self.rng.random() < 0.06:
                words[i] += ","
        return " ".join(words).capitalize() + self.rng.choice(".....?!")

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(3, 7)))

    def prose(self) -> str:
        paragraphs = [self.paragraph() for _ in range(self.rng.randint(3, 9))]
        if self.rng.random() < 0.5:
            paragraphs.insert(0, " ".join(self.rng.choices(COMMON[60:], k=5)).title())
        return self.rng.choice(("\n\n", "\n")).join(paragraphs)

    def boilerplate(self) -> str:
        """Menus and notices around an article body of zero to five paragraphs."""
        lines = list(self.rng.sample(NAV, self.rng.randint(4, 12)))
        lines += [self.paragraph() for _ in range(self.rng.choice((0, 1, 1, 2, 3, 5)))]
        lines += self.rng.sample(NOTICES, self.rng.randint(2, 6)) + self.rng.sample(NAV, self.rng.randint(2, 8))
        return "\n".join(lines)

    def spam(self) -> str:
        phrase = " ".join(self.rng.choices(self.vocab[:300], k=self.rng.randint(3, 8)))
        pieces = [self.sentence() for _ in range(3)]
        pieces += [f"{phrase.capitalize()}! Best {phrase} online." for _ in range(self.rng.randint(15, 40))]
        self.rng.shuffle(pieces)
        return "\n".join(pieces)

    def bullet_list(self) -> str:
        marker = self.rng.choice(("\u2022 ", "- ", "* "))
        items = [marker + " ".join(self.rng.choices(self.vocab, self.weights, k=self.rng.randint(2, 7)))
                 for _ in range(self.rng.randint(30, 80))]  # fmt: skip
        return "\n".join(items)

    def code(self) -> str:
        blocks = []
        for i in range(self.rng.randint(8, 20)):
            name, arg = self.rng.choice(self.vocab[60:200]), self.rng.choice(self.vocab[60:200])
            blocks.append(
                f"function {name}_{i}({arg}) {{\n  const total = {arg}.length * {i};\n"
                f"  if (total > {self.rng.randint(1, 99)}) {{ return {arg}.map((x) => x + 1); }}\n"
                f"  // {self.sentence()}\n  return null;\n}}"
            )
        return "\n\n".join(blocks)


KINDS: dict[str, Callable[[Generator], str]] = {
    "prose": Generator.prose,
    "boilerplate": Generator.boilerplate,
    "spam": Generator.spam,
    "list": Generator.bullet_list,
    "code": Generator.code,
}
SHARES = {"prose": 0.5, "boilerplate": 0.15, "spam": 0.15, "list": 0.1, "code": 0.1}


def corpus(n_docs: int, seed: int) -> tuple[list[str], list[str]]:
    """`n_docs` documents and their kinds, shuffled, in the fixed `SHARES` proportions."""
    gen = Generator(seed)
    kinds = [kind for kind, share in SHARES.items() for _ in range(round(share * n_docs))]
    gen.rng.shuffle(kinds)
    return [KINDS[kind](gen) for kind in kinds], kinds


def cpu_seconds(fn: Callable[[], object], repeat: int) -> float:
    """The least CPU time of `repeat` runs: the machine is shared, and others' load only adds time."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--single", type=int, default=200, help="documents timed one call each")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the fastest counts")
    args = parser.parse_args()
    pa.set_cpu_count(1)  # "per core": Arrow must not spread a kernel over other cores
    texts, kinds = corpus(args.docs, args.seed)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    quality_signal_columns(batches[0][:10])  # warm up imports and regex compilation

    columns = [quality_signal_columns(b) for b in batches]
    batch_s = sum(cpu_seconds(lambda b=b: quality_signal_columns(b), args.repeat) for b in batches)  # type: ignore[misc]
    single = texts[: args.single]
    single_mb = sum(len(t.encode()) for t in single) / 1e6
    single_s = cpu_seconds(lambda: [quality_signals(t) for t in single], args.repeat)
    clean_s = cpu_seconds(lambda: [c4_clean_lines(t) for t in texts], args.repeat)

    thresholds = QualityThresholds()
    dropped: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {kind: Counter() for kind in SHARES}
    for batch_index, batch_columns in enumerate(columns):
        fails = rule_failures(batch_columns, thresholds)
        for row in range(len(batches[batch_index])):
            kind = kinds[batch_index * args.batch + row]
            failed = [reason.value for reason, mask in fails.items() if mask[row]]
            dropped[kind] += bool(failed)
            reasons[kind].update(failed)
    total = Counter(kinds)
    print(json.dumps({
        "benchmark": "quality_signals",
        "docs": len(texts),
        "mb": round(mb, 3),
        "mean_doc_kb": round(mb * 1000 / len(texts), 2),
        "batch": args.batch,
        "mb_per_s_per_core": round(mb / batch_s, 2),
        "single_doc_mb_per_s_per_core": round(single_mb / single_s, 2),
        "c4_clean_lines_mb_per_s_per_core": round(mb / clean_s, 2),
        "target_mb_per_s_per_core": TARGET_MB_PER_S,
        "meets_target": mb / batch_s >= TARGET_MB_PER_S,
        "dropped_fraction": {kind: round(dropped[kind] / total[kind], 3) for kind in SHARES},
        "top_reasons": {kind: {r: round(c / total[kind], 3) for r, c in reasons[kind].most_common(4)}
                        for kind in SHARES},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
