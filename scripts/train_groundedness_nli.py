"""Train the offline groundedness judge's entailment head over frozen MiniLM token alignments (deterministic).

Each generated (premise, claim) pair is featurised as the judge does it (`keel.evals._nli.pair_features`
via `claim_head_features`: the claim's contextual MiniLM tokens aligned to the premise sentences'),
and a logistic regression (scikit-learn, C=0.05, balanced) learns P(supported); mean, scale and
weights go to src/keel/evals/data/groundedness_nli.npz. The script then scores the 75 dev contexts
of benchmarks/data/groundedness_handwritten.jsonl claim by claim and writes into the file the head's
weight against the rule model and the support threshold with the best dev accuracy (`--tune-only`
redoes just that). The test split is never read.

Training pairs are generated perturbations of real sentences: the seed paragraphs of
scripts/train_groundedness.py and tests/data/evals/groundedness.jsonl, prose paragraphs of the
Python documentation (Debian's python3-doc, `/usr/share/doc/python3*/html/_sources`), and
role/comparative/direction/number-word templates over random names. Faithful variants: copies,
clauses dropped or moved, WordNet synonyms, numbers spelt out, converse verbs and comparatives
("A beat B" = "B lost to A", "A is cheaper than B" = "B is more expensive than A"), passives.
Contradicting: numbers, names, dates and WordNet opposites changed, negation added or removed,
roles swapped. Not in the context: fabricated clauses, another paragraph's sentence, the subject
with another sentence's predicate.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/train_groundedness_nli.py [--pairs 4000] [--tune-only]
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_groundedness import (  # noqa: E402
    FABRICATED,
    OPPOSITES,
    PARAGRAPHS,
    SYNONYMS,
    contradicting,
    faithful,
    unsupported,
)

from keel.evals._claims import FEATURES as FEATURES_  # noqa: E402
from keel.evals._claims import split_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "keel" / "evals" / "data" / "groundedness_nli.npz"
SEED = 20261206
ENTAIL, CONTRADICT, NEUTRAL = 0, 1, 2

NAMES = (
    "Rovers United Harlow Kestrel Marlow Orion Vega Delta Halden Brookfield Ashby Corvin Ivanova Chen Rossi Okafor "
    "Lindqvist Moreau Tanaka Silva Novak Haddad Baker Keller Duarte Fischer Nakamura Olsen Petrov Quinn Reyes "
    "Sato Varga Weber Yilmaz Zhou Abbott Brennan Castillo Dobson Evans Farrell Garcia Hughes Ingram Jensen"
).split()
PLACES = "Millbrook Ashford Kelso Dunmore Carrow Eastleigh Fenwick Glenrock Hollins Irvine Larch Norbury".split()
THINGS = "plan model phone laptop route service bridge ferry tariff kettle camera license".split()
# (comparative, its converse): "A is X than B" says the same as "B is Y than A".
COMPARATIVES = [
    ("cheaper", "more expensive"), ("larger", "smaller"), ("faster", "slower"), ("older", "younger"),
    ("higher", "lower"), ("longer", "shorter"), ("heavier", "lighter"), ("earlier", "later"),
    ("warmer", "colder"), ("wider", "narrower"), ("stronger", "weaker"), ("busier", "quieter"),
    ("more popular", "less popular"), ("safer", "more dangerous"), ("deeper", "shallower"),
]  # fmt: skip
CONVERSES = [
    ("beat", "lost to"), ("defeated", "lost to"), ("hired", "was hired by"), ("replaced", "was replaced by"),
    ("succeeded", "was succeeded by"), ("overtook", "was overtaken by"), ("acquired", "was acquired by"),
    ("sued", "was sued by"), ("trained", "was trained by"), ("interviewed", "was interviewed by"),
    ("sold the company to", "bought the company from"), ("lent money to", "borrowed money from"),
]  # fmt: skip
DIRECTIONS = [("north", "south"), ("east", "west"), ("above", "below"), ("before", "after"), ("upstream", "downstream")]


def _doc_paragraphs(limit: int, rng: random.Random) -> list[str]:
    """Prose paragraphs (2-4 plain sentences) from the Python documentation sources, if installed."""
    files = sorted(glob.glob("/usr/share/doc/python3*/html/_sources/**/*.rst.txt", recursive=True))
    out: list[str] = []
    for name in files:
        for block in Path(name).read_text(errors="ignore").split("\n\n"):
            text = " ".join(line.strip() for line in block.splitlines())
            if not text or re.search(r"[`*:|<>=\[\]{}_\\]|\.\.|^\s*[-#]", text):
                continue
            sentences = [s for s in split_sentences(text) if 6 <= len(s.split()) <= 32]
            if len(sentences) >= 2:
                out.append(" ".join(sentences[:4]))
    rng.shuffle(out)
    return out[:limit]


def _templates(rng: random.Random, count: int) -> list[tuple[str, str, int]]:
    """(premise, claim, label) from role, comparative and direction templates over random names."""
    out: list[tuple[str, str, int]] = []
    for _ in range(count):
        a, b = rng.sample(NAMES, 2)
        kind = rng.randrange(4)
        filler = rng.choice(
            [
                "",
                f" {rng.choice(NAMES)} did not take part.",
                " The result was not expected.",
                f" It cannot be compared with {rng.choice(NAMES)}.",
            ]
        )
        if kind == 0:
            x, y = rng.choice(CONVERSES)
            when = rng.choice(["in 2019", "last season", "in the final", "on Monday", ""])
            premise = f"{a} {x} {b} {when}".strip() + "." + filler
            passive = y.startswith("was ")
            out += [
                (premise, f"{b} {y} {a}.", ENTAIL),
                (premise, f"{b} {x} {a}.", CONTRADICT),
                (premise, f"{a} {y} {b}.", CONTRADICT),
                (premise, f"{a} {x} {rng.choice([n for n in NAMES if n not in (a, b)])}.", NEUTRAL),
            ]
            if passive:
                out.append((premise, f"{b} was {x.split()[0]} by {a}.", ENTAIL))
        elif kind == 1:
            x, y = rng.choice(COMPARATIVES)
            t = rng.choice(THINGS)
            premise = f"The {a} {t} is {x} than the {b} {t}." + filler
            out += [
                (premise, f"The {b} {t} is {y} than the {a} {t}.", ENTAIL),
                (premise, f"The {a} {t} is {y} than the {b} {t}.", CONTRADICT),
                (premise, f"The {b} {t} is {x} than the {a} {t}.", CONTRADICT),
                (premise, f"The {a} {t} is {x} than every other {t}.", NEUTRAL),
            ]
        elif kind == 2:
            x, y = rng.choice(DIRECTIONS)
            p, q = rng.sample(PLACES, 2)
            verb = rng.choice(["lies", "is", "is located", "sits"])
            premise = f"{p} {verb} {x} of {q}." + filler
            out += [
                (premise, f"{q} is {y} of {p}.", ENTAIL),
                (premise, f"{p} is {y} of {q}.", CONTRADICT),
                (premise, f"{q} is {x} of {p}.", CONTRADICT),
                (premise, f"{p} is the largest town near {q}.", NEUTRAL),
            ]
        else:
            n, m = rng.sample(range(2, 13), 2)
            unit = rng.choice(["year", "month", "week", "day", "hour"])
            t = rng.choice(THINGS)
            words = "two three four five six seven eight nine ten eleven twelve".split()
            premise = f"The {a} {t} comes with a {words[n - 2]}-{unit} guarantee." + filler
            out += [
                (premise, f"The {a} {t} is guaranteed for {n} {unit}s.", ENTAIL),
                (premise, f"The {a} {t} has a {m}-{unit} guarantee.", CONTRADICT),
                (premise, f"The {a} {t} is guaranteed for {words[m - 2]} {unit}s.", CONTRADICT),
                (premise, f"The {b} {t} comes with a {words[n - 2]}-{unit} guarantee.", CONTRADICT),
                (premise, f"The {a} {t} guarantee can be extended online.", NEUTRAL),
            ]
    return out


def _antonym(sentence: str, rng: random.Random) -> list[str]:
    words = re.findall(r"[a-z]+", sentence)
    found = [w for w in words if w in OPPOSITES and len(w) > 3]
    return [re.sub(rf"\b{w}\b", rng.choice(OPPOSITES[w]), sentence, count=1) for w in found[:2]]


def _synonym(sentence: str, rng: random.Random) -> list[str]:
    words = sentence.split()
    slots = [i for i, w in enumerate(words) if w.isalpha() and w.islower() and len(w) > 3 and SYNONYMS.get(w)]
    if not slots:
        return []
    picked = rng.sample(slots, min(len(slots), 2))
    return [" ".join(rng.choice(SYNONYMS[w]) if i in picked else w for i, w in enumerate(words))]


def _swapped_predicate(sentence: str, other: str) -> str | None:
    """The subject of `sentence` with the predicate of `other` (a related-looking claim the context lacks)."""
    verb = re.compile(r"\b(is|are|was|were|has|have|can|will|must|should|does|returns?|uses?|takes?)\b")
    m, n = verb.search(sentence), verb.search(other)
    if not m or not n or m.start() < 3:
        return None
    return sentence[: m.start()] + other[n.start() :]


def generate(rng: random.Random, doc_limit: int, templates: int) -> list[tuple[str, str, int]]:
    """(premise, claim, label) pairs from every seed source."""
    seeds = list(PARAGRAPHS)
    for line in (ROOT / "tests" / "data" / "evals" / "groundedness.jsonl").read_text().splitlines():
        seeds += [c for c in json.loads(line)["contexts"] if c not in seeds]
    seeds += _doc_paragraphs(doc_limit, rng)
    pairs: list[tuple[str, str, int]] = []
    for i, context in enumerate(seeds):
        sentences = split_sentences(context)
        other_context = seeds[(i * 7 + 3) % len(seeds)]
        others = split_sentences(other_context) or [other_context]
        for k, sentence in enumerate(sentences):
            following = sentences[k + 1] if k + 1 < len(sentences) else None
            pairs += [(context, a, ENTAIL) for a in faithful(sentence, following, rng)]
            pairs += [(context, a, ENTAIL) for a in _synonym(sentence, rng)]
            bad = contradicting(sentence, context, rng) + _antonym(sentence, rng)
            pairs += [(context, a, CONTRADICT) for a in bad if a != sentence]
            other = rng.choice(others)
            pairs += [(context, a, NEUTRAL) for a in unsupported(sentence, other, rng)]
            swapped = _swapped_predicate(sentence, rng.choice(others))
            if swapped:
                pairs.append((context, swapped, NEUTRAL))
            if following:
                pairs.append(
                    (context, sentence.rstrip(".") + rng.choice(FABRICATED) + ", and " + following[0].lower()
                     + following[1:], NEUTRAL)
                )  # fmt: skip
    pairs += _templates(rng, templates)
    rng.shuffle(pairs)
    return pairs


def featurise(judge: Any, pairs: list[tuple[str, str, int]]) -> np.ndarray:
    """`pair_features` of every (premise, claim) pair, as the judge computes them."""
    from keel.evals._offline_judge import claim_head_features

    premises = list(dict.fromkeys(p for p, _, _ in pairs))
    judge.prefetch([""] * len(pairs), [c for _, c, _ in pairs], [[p] for p in premises], {"groundedness"})
    sentences = list(dict.fromkeys(s for p in premises for s in split_sentences(p)))
    judge.tokens.encode(sentences + [c for _, c, _ in pairs])
    rows = []
    for premise, claim, _ in pairs:
        passages = judge._passages([premise])
        vectors = judge._embed([claim, *passages])
        rows.append(claim_head_features(judge, claim, vectors[0], passages, vectors[1:] @ vectors[0], [premise]))
    return np.stack(rows)


def tune(head_path: Path) -> dict[str, Any]:
    """The head's weight against the rule model and the support threshold with the best dev accuracy.

    Scores the 75 dev contexts (225 cases) of the hand-written set claim by claim, as the judge does,
    and writes the chosen weight and threshold into the head file's meta; the test split is not read.
    """
    from keel.evals._nli import EntailmentHead, blend
    from keel.evals._offline_judge import OfflineJudge, OfflineJudgeOptions, capped_support

    judge = OfflineJudge(OfflineJudgeOptions(nli_weight=1.0, nli_path=head_path, support_threshold=0.5))
    cases = [(c, t, lab) for c, t, lab in dev_groups()]
    judge.prefetch([""] * len(cases), [t for _, t, _ in cases], [c for c, _, _ in cases], {"groundedness"})
    claims = []  # per case: [(rule, learned, relatedness)]
    for contexts, text, _ in cases:
        score = judge.groundedness(text, contexts)
        rows = []
        for claim in score.details["claims"]:
            values = [claim["checks"][k] for k in FEATURES_]
            rows.append((judge.model.probability(values), float(claim["entailment"]), values[0]))
        claims.append(rows)
    labels = [lab for _, _, lab in cases]
    best: tuple[float, float, float] = (-1.0, 0.0, 0.5)
    table = {}
    for weight in [round(w, 2) for w in np.arange(0.0, 1.01, 0.1)]:
        scores = [
            min(capped_support(blend(r, h, weight), rel, judge.options.relatedness_floor) for r, h, rel in rows)
            for rows in claims
        ]
        faithful = [s for s, lab in zip(scores, labels, strict=True) if lab == "faithful"]
        auc_c = _auc(faithful, [s for s, lab in zip(scores, labels, strict=True) if lab == "contradicting"])
        auc_u = _auc(faithful, [s for s, lab in zip(scores, labels, strict=True) if lab == "unsupported"])
        for threshold in [round(t, 2) for t in np.arange(0.02, 0.97, 0.02)]:
            acc = float(
                np.mean([(s >= threshold) == (lab == "faithful") for s, lab in zip(scores, labels, strict=True)])
            )
            if acc > best[0]:
                best = (acc, weight, threshold)
        table[weight] = (round(auc_c, 4), round(auc_u, 4))
    head = EntailmentHead.load(head_path)
    head.meta.update({"weight": best[1], "threshold": best[2], "dev_accuracy": round(best[0], 4),
                      "dev_auc_by_weight": {str(k): v for k, v in table.items()}})  # fmt: skip
    head.save(head_path)
    return head.meta


def _auc(pos: list[float], neg: list[float]) -> float:
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def dev_groups() -> list[tuple[list[str], str, str]]:
    """(contexts, answer, label) of the dev split; the test split is skipped unread."""
    rows = []
    for line in (ROOT / "benchmarks" / "data" / "groundedness_handwritten.jsonl").read_text().splitlines():
        group = json.loads(line)
        if group["split"] == "dev":
            rows += [(group["contexts"], a["text"], a["label"]) for a in group["answers"]]
    return rows


def main() -> None:
    """Generate pairs, featurise them with the frozen MiniLM, fit the head, write it; print one JSON line."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from keel.evals._nli import EntailmentHead
    from keel.evals._offline_judge import OfflineJudge, OfflineJudgeOptions

    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=9000, help="how many generated pairs to featurise")
    parser.add_argument("--docs", type=int, default=900)
    parser.add_argument("--templates", type=int, default=900)
    parser.add_argument("--c", type=float, default=0.05, help="inverse L2 regularisation of the logistic head")
    parser.add_argument("--probe", action="store_true", help="only generate and print counts and samples")
    parser.add_argument("--tune-only", action="store_true", help="only re-tune weight and threshold on dev")
    args = parser.parse_args()
    if args.tune_only:
        print(json.dumps(tune(OUT)))
        return

    rng = random.Random(SEED)
    pairs = generate(rng, args.docs, args.templates)
    counts = [sum(1 for _, _, y in pairs if y == k) for k in (ENTAIL, CONTRADICT, NEUTRAL)]
    if args.probe:
        for p, c, y in pairs[:40]:
            print(y, "|", c, "||", p[:100])
        print(json.dumps({"pairs": len(pairs), "counts": counts}))
        return
    pairs = pairs[: args.pairs]
    start, cpu = time.perf_counter(), time.process_time()
    judge = OfflineJudge(OfflineJudgeOptions(nli_weight=0.0))
    x = featurise(judge, pairs)
    y = np.asarray([int(label == ENTAIL) for _, _, label in pairs])
    featurise_cpu = time.process_time() - cpu
    cut = int(0.8 * len(y))
    mean, scale = x[:cut].mean(axis=0), x[:cut].std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    model = LogisticRegression(C=args.c, class_weight="balanced", max_iter=3000)
    model.fit(z[:cut], y[:cut])
    held_out_auc = roc_auc_score(y[cut:], model.predict_proba(z[cut:])[:, 1])
    model.fit(z, y)
    meta = {
        "trained_by": "scripts/train_groundedness_nli.py",
        "seed": SEED,
        "pairs": len(pairs),
        "supported": int(y.sum()),
        "generated_counts": counts,
        "c": args.c,
        "held_out_generated_auc": round(float(held_out_auc), 4),
        "featurise_cpu_seconds": round(featurise_cpu, 1),
    }
    head = EntailmentHead(mean, scale, model.coef_[0], float(model.intercept_[0]), meta)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    head.save(OUT)
    meta = tune(OUT)
    meta["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps({**meta, "out": str(OUT), "bytes": OUT.stat().st_size}))


if __name__ == "__main__":
    main()
