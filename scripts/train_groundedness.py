"""Train the offline groundedness judge's claim model from generated perturbations (deterministic).

Seed paragraphs (the contexts of tests/data/evals/groundedness.jsonl plus the ones below) are cut
into sentences; each sentence yields faithful answers (a copy, a clause dropped or moved, two
sentences merged, numbers spelt out, hand-listed and WordNet synonyms, a filler phrase, a converse
verb) and unfaithful ones: contradicting (a number, entity, date, scale word or WordNet opposite
changed, a negation added or removed, two names or two numbers swapped, the sentence said of
another subject) and unsupported (a fabricated clause, a sentence from another paragraph). Every
answer's claims are featurised by `OfflineJudge` and a logistic regression (scikit-learn, lbfgs,
C=0.1) is fitted; the weights go to src/keel/evals/data/groundedness_model.json. Generated
faithful answers are near-copies, so the fitted probability is too strict for real paraphrases:
the decision threshold is the one with the best accuracy on the 75 `dev` contexts (225 cases) of
benchmarks/data/groundedness_handwritten.jsonl, scored as the judge scores them (support capped by
relatedness, `OfflineJudgeOptions.relatedness_floor`). Its 50 `test` contexts are never read here, and
none of their text is in the seeds (tests/unit/evals/test_eval_claims.py checks it).

    PYTHONPATH=src python scripts/train_groundedness.py
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np

from keel.evals._claims import _NEGATIONS, _ONES, _SCALE_GROUPS, _STOPWORDS, _SYNONYMS, FEATURES, split_sentences
from keel.evals._offline_judge import OfflineJudge, capped_support

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "keel" / "evals" / "data" / "groundedness_model.json"
SEED = 20261206
# Regularisation: C=0.1 ranked the 105 dev cases best among 0.1, 1 and 10 (AUC and accuracy within 0.03)
C = 0.1
POSITIVE = {"relatedness", "coverage_context", "clause_coverage"}
# Left out of the fit (weight 0): the share of the claim's words found anywhere in the contexts and
# the count of words found nowhere penalise a paraphrase's own vocabulary, and on the 105 dev cases
# the model ranks as well without them (AUC 0.909 / 0.955, accuracy 0.914 against 0.902 / 0.952 / 0.914).
UNUSED = {"coverage_context", "novel_words"}

PARAGRAPHS = [
    "The museum opens at 10am on weekdays and at 9am on Saturdays. Entry is free for children under 12. "
    "Adults pay 15 euros.",
    "Members of the gym can book up to three classes a week. Classes must be cancelled at least 24 hours in advance. "
    "Late cancellations cost 5 dollars.",
    "The Orion satellite was launched from Kourou in 2019. "
    "It orbits at an altitude of 700 km and is expected to operate until 2031.",
    "Trains to Leeds leave every 30 minutes from platform 4. The last train departs at 23:10. "
    "Bicycles are allowed only outside peak hours.",
    "Helena Marsh chaired the committee until 2020. She was succeeded by David Okoye, who had served as treasurer.",
    "The recipe needs 200 grams of flour and two eggs. Bake the cake at 180 degrees for 35 minutes. Let it cool before "
    "slicing.",
    "In the chess final, Ivanova beat Chen after 54 moves. Chen had won the semi-final against Rossi.",
    "Parking in zone A is limited to two hours. Residents with a permit may park without a time limit. "
    "Zone B is free after 6pm.",
    "The insurance covers theft and fire but not flood damage. Claims must be filed within 60 days of the incident.",
    "Copper prices rose 4% in March, while aluminium fell 2%. Analysts expect demand from China to increase.",
    "The river Alder flows east from the hills into the sea at Portmere. It is 88 km long and has no dams.",
    "Library books can be borrowed for three weeks and renewed twice. "
    "Reference books cannot be taken out of the building.",
    "Version 2.0 of the client removed the legacy sync command. Users should switch to the new push command, which is "
    "faster.",
    "The northern wing of the hospital houses the maternity ward. The emergency department is in the south wing.",
    "Solar panels on the roof produce about 4,000 kWh a year. Surplus power is exported to the grid automatically.",
    "Greta Lund founded the bakery in 1987 with her husband Paul. Their daughter Ida took over the business in 2015.",
    "The election was held on 12 May. Turnout was 64%, higher than at the previous election.",
    "Firmware updates are installed automatically at night. Users can postpone an update for up to seven days.",
    "Tickets for the concert cost 40 pounds, or 30 pounds for students. Doors open at 7pm and the show starts at 8pm.",
    "The glacier has retreated by 1.2 km since 1950. Scientists measure its thickness every summer.",
    "Orders over 50 euros ship for free. Smaller orders pay a flat shipping fee of 4.95 euros.",
    "The Falcon 3 drone weighs 900 grams and flies for up to 25 minutes. It must not be flown above 120 metres.",
    "Apprentices work four days a week and study one day at college. The programme lasts two years.",
    "The bank's profit was 1.3 billion dollars, down 9% on last year. Its chief executive, Laura Kim, blamed higher "
    "costs.",
]
FILLERS = ["Yes, ", "In short, ", "According to the text, ", "As stated, ", "Basically, ", "To answer briefly, "]
FABRICATED = [
    ", and it was approved by the regional council",
    ", which costs an extra 25 dollars",
    " according to a 2018 survey",
    ", and Martin Hale oversees it",
    ", but only on Wednesdays",
    ", and the rule will change next year",
]
_NUM_WORD = {v: k for k, v in _ONES.items() if k != "dozen"}
_AUX = re.compile(r"\b(is|are|was|were|can|will|may|must|should|has|have|had|does|do)\b")
_MONTHS = "January February March April May June July August September October November December".split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def _lexicon() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """WordNet synonyms and opposites by word (the judge's own lexicon, so the generator and judge agree)."""
    data = json.loads((ROOT / "src" / "keel" / "evals" / "data" / "wordnet_lexicon.json").read_text())
    opposites: dict[str, list[str]] = {}
    for a, b in data["antonyms"]:
        opposites.setdefault(a, []).append(b)
        opposites.setdefault(b, []).append(a)
    return data["synonyms"], opposites


SYNONYMS, OPPOSITES = _lexicon()


def _entities(sentence: str) -> list[str]:
    words = re.findall(r"(?<=[a-z,] )([A-Z][a-z]+(?: [A-Z][a-z]+)?)", sentence)
    return [w for w in words if w.split()[0] not in _MONTHS + _DAYS]


def faithful(sentence: str, following: str | None, rng: random.Random) -> list[str]:
    """Answers a context sentence supports."""
    out = [sentence]
    if ", " in sentence and len(sentence.rsplit(", ", 1)[0].split()) >= 4:
        out.append(sentence.rsplit(", ", 1)[0] + ".")
    if following:
        out.append(sentence.rstrip(".") + ", and " + following[0].lower() + following[1:])
    spelt = re.sub(r"\b(\d{1,2})\b(?![.,:]\d)", lambda m: _NUM_WORD.get(int(m.group(1)), m.group(1)), sentence)
    if spelt != sentence:
        out.append(spelt)
    words = sentence.split()
    synonyms = [
        next((w for w, g in _SYNONYMS.items() if g == _SYNONYMS.get(word.lower()) and w != word.lower()), word)
        for word in words
    ]
    if synonyms != words:
        out.append(" ".join(synonyms))
    out.append(rng.choice(FILLERS) + sentence[0].lower() + sentence[1:])
    fronted = re.match(r"(.+?),? ((?:in|on|at|for|after|before|from|until) [^,]+)\.$", sentence)
    if fronted and len(fronted.group(1).split()) >= 3:
        out.append(
            f"{fronted.group(2)[0].upper()}{fronted.group(2)[1:]}, {fronted.group(1)[0].lower()}{fronted.group(1)[1:]}."
        )
    converse = re.sub(r"\b([A-Z]\w+) (?:beat|defeated) ([A-Z]\w+)", r"\2 lost to \1", sentence)
    if converse != sentence:
        out.append(converse)
    out += _reworded(sentence, rng)
    return out


def _reworded(sentence: str, rng: random.Random) -> list[str]:
    """Paraphrases that bring in words the context lacks: WordNet synonyms, a clause dropped or moved."""
    words = sentence.split()
    slots = [
        i
        for i, w in enumerate(words)
        if w.isalpha() and w.islower() and w not in _STOPWORDS and w not in _NEGATIONS and SYNONYMS.get(w) and i > 0
    ]
    out: list[str] = []
    if slots:
        for _ in range(2):
            picked = rng.sample(slots, min(len(slots), rng.choice([1, 2])))
            new = [rng.choice(SYNONYMS[w]) if i in picked else w for i, w in enumerate(words)]
            out.append(" ".join(new))
    parts = sentence.rstrip(".").split(", ")
    if len(parts) == 2 and all(len(p.split()) >= 3 for p in parts):
        out.append(f"{parts[1][0].upper()}{parts[1][1:]}, {parts[0][0].lower()}{parts[0][1:]}.")
    return out


def _changed_numbers(sentence: str, context: str, rng: random.Random) -> list[str]:
    out: list[str] = []
    numbers = re.findall(r"\b\d+(?:[.,]\d+)?\b", sentence)
    if numbers:
        n = rng.choice(numbers)
        value = float(n.replace(",", ""))
        new = f"{value * rng.choice([2, 3]) + rng.choice([0, 1]):g}" if value < 1900 else str(int(value) + 7)
        out.append(sentence.replace(n, new, 1))
    elsewhere = [n for n in re.findall(r"\b\d+(?:[.,]\d+)?\b", context) if n not in numbers]
    if numbers and elsewhere:
        out.append(sentence.replace(rng.choice(numbers), rng.choice(elsewhere), 1))
    spelt = [w for w in _NUM_WORD.values() if re.search(rf"\b{w}\b", sentence, re.I)]
    if spelt:
        w = spelt[0]
        out.append(re.sub(rf"\b{w}\b", rng.choice([x for x in _NUM_WORD.values() if x != w][:12]), sentence, count=1))
    return out


def _changed_names(sentence: str, context: str, rng: random.Random) -> list[str]:
    out: list[str] = []
    names = _entities(sentence)
    others = [e for e in _entities(context) if e not in names]
    if names and others:
        out.append(sentence.replace(names[0], rng.choice(others), 1))
    if len(names) >= 2 and names[0] != names[1]:
        a, b = names[0], names[1]
        out.append(sentence.replace(a, "\0").replace(b, a).replace("\0", b))
    for names_list in (_MONTHS, _DAYS):
        found = [x for x in names_list if x in sentence]
        if found:
            out.append(sentence.replace(found[0], rng.choice([x for x in names_list if x != found[0]])))
    return out


def _flipped(sentence: str, rng: random.Random) -> list[str]:
    out: list[str] = []
    if re.search(r"\bnot\b|n't\b", sentence):
        out.append(re.sub(r"\s*\bnot\b|n't\b", "", sentence, count=1).replace("cannot", "can"))
    elif _AUX.search(sentence):
        out.append(_AUX.sub(lambda m: m.group(0) + " not", sentence, count=1))
    for word in re.findall(r"[a-z]+", sentence):
        if word in OPPOSITES and word not in _STOPWORDS:
            out.append(re.sub(rf"\b{word}\b", rng.choice(OPPOSITES[word]), sentence, count=1))
            break
    for word in re.findall(r"[a-z]+", sentence):
        for plus, minus in _SCALE_GROUPS.values():
            p, m = plus.split(), minus.split()
            if word in p or word in m:
                return [*out, re.sub(rf"\b{word}\b", rng.choice(m if word in p else p), sentence, count=1)]
    return out


def _rebound(sentence: str, context: str, rng: random.Random) -> list[str]:
    """Two numbers of one sentence swapped, and the sentence said of another sentence's subject."""
    out: list[str] = []
    numbers = list(dict.fromkeys(re.findall(r"\b\d+(?:\.\d+)?\b", sentence)))
    if len(numbers) >= 2:
        a, b = numbers[:2]
        out.append(re.sub(rf"\b({re.escape(a)}|{re.escape(b)})\b", lambda m: b if m.group(1) == a else a, sentence))
    subject = re.match(r"([A-Z][a-z]+(?: [A-Z][a-z]+)*) ", sentence)
    others = [
        m.group(1)
        for m in re.finditer(r"(?:^|\. )([A-Z][a-z]+(?: [A-Z][a-z]+)+) ", context)
        if subject and m.group(1) != subject.group(1)
    ]
    if subject and others and subject.group(1) not in ("The", "In", "It", "A"):
        out.append(rng.choice(others) + sentence[len(subject.group(1)) :])
    return out


def contradicting(sentence: str, context: str, rng: random.Random) -> list[str]:
    """Answers a context sentence contradicts."""
    out = _changed_numbers(sentence, context, rng) + _changed_names(sentence, context, rng) + _flipped(sentence, rng)
    return out + _rebound(sentence, context, rng)


def unsupported(sentence: str, other: str, rng: random.Random) -> list[str]:
    """Answers that add what no context says: a fabricated clause, a sentence of another paragraph."""
    return [sentence.rstrip(".") + rng.choice(FABRICATED) + ".", other]


def generate(rng: random.Random) -> list[tuple[str, list[str], int]]:
    """(answer, contexts, label) triples: label 1 for faithful, 0 for unsupported, -1 for contradicting."""
    seeds = list(PARAGRAPHS)
    labelled = ROOT / "tests" / "data" / "evals" / "groundedness.jsonl"
    for line in labelled.read_text().splitlines():
        for context in json.loads(line)["contexts"]:
            if context not in seeds:
                seeds.append(context)
    rows: list[tuple[str, list[str], int]] = []
    for i, context in enumerate(seeds):
        sentences = split_sentences(context)
        other_context = seeds[(i + 7) % len(seeds)]
        for k, sentence in enumerate(sentences):
            following = sentences[k + 1] if k + 1 < len(sentences) else None
            rows += [(a, [context], 1) for a in faithful(sentence, following, rng)]
            other = rng.choice(split_sentences(other_context))
            rows += [(a, [context], -1) for a in contradicting(sentence, context, rng) if a != sentence]
            rows += [(a, [context], 0) for a in unsupported(sentence, other, rng)]
    return rows


def dev_threshold(
    judge: OfflineJudge, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float
) -> float:
    """The support threshold with the best accuracy on the dev split of the hand-written set."""
    dev = ROOT / "benchmarks" / "data" / "groundedness_handwritten.jsonl"
    scores, labels = [], []
    for line in dev.read_text().splitlines():
        group = json.loads(line)
        if group["split"] != "dev":
            continue
        for answer in group["answers"]:
            feats = np.asarray(judge.claim_features(answer["text"], group["contexts"]))
            z = intercept + ((feats - mean) / scale) @ coef
            floor = judge.options.relatedness_floor
            probabilities = 1 / (1 + np.exp(-z))
            support = [capped_support(float(p), float(f[0]), floor) for p, f in zip(probabilities, feats, strict=True)]
            scores.append(min(support))
            labels.append(answer["label"] == "faithful")
    grid = [round(t, 2) for t in np.arange(0.02, 0.97, 0.02)]
    accuracy = [np.mean([(s >= t) == lab for s, lab in zip(scores, labels, strict=True)]) for t in grid]
    return grid[int(np.argmax(accuracy))]


def main() -> None:
    """Generate, featurise, fit and write the model; print one JSON line with the training figures."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rng = random.Random(SEED)
    rows = generate(rng)
    judge = OfflineJudge()
    judge.prefetch([""] * len(rows), [a for a, _, _ in rows], [c for _, c, _ in rows], {"groundedness"})
    x_rows: list[list[float]] = []
    y: list[int] = []
    for answer, contexts, label in rows:
        feats = judge.claim_features(answer, contexts)
        if not feats:
            continue
        # An unfaithful answer's weakest claim carries the fault; a faithful answer's claims all hold.
        claims = feats if label == 1 else [min(feats, key=lambda f: f[FEATURES.index("clause_coverage")])]
        x_rows += claims
        y += [int(label == 1)] * len(claims)
    x = np.asarray(x_rows)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    # Each check may only count against support (and relatedness only for it): a feature whose
    # fitted weight comes out with the wrong sign (a side effect of correlated features) is dropped
    # and the rest refitted, so the model cannot reward a contradiction the generator rarely made.
    sign = np.array([1.0 if name in POSITIVE else -1.0 for name in FEATURES])
    keep = np.array([name not in UNUSED for name in FEATURES])
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    while True:
        model.fit(z * keep, y)
        wrong = keep & (model.coef_[0] * sign < 0)
        if not wrong.any():
            break
        keep &= ~wrong
    cv = cross_val_score(model, z * keep, y, cv=5, scoring="roc_auc")
    model.fit(z * keep, y)
    threshold = dev_threshold(judge, mean, scale, model.coef_[0] * keep, float(model.intercept_[0]))
    data = {
        "features": list(FEATURES),
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "coef": [round(float(v), 6) if k else 0.0 for v, k in zip(model.coef_[0], keep, strict=True)],
        "intercept": round(float(model.intercept_[0]), 6),
        "threshold": threshold,
        "meta": {
            "trained_by": "scripts/train_groundedness.py",
            "seed": SEED,
            "claims": len(y),
            "supported": int(sum(y)),
            "cv_auc": round(float(cv.mean()), 4),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps({"claims": len(y), "cv_auc": data["meta"]["cv_auc"], "threshold": threshold, "out": str(OUT)}))


if __name__ == "__main__":
    main()
