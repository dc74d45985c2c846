"""Train the name classifier behind Keel's offline person detection (src/keel/govern/_data/people_model.json).

Sentences are generated from templates with Faker names, cities, companies, streets and products of many
locales (fixed seed), so the classifier learns from context and lexicon features, not from any evaluation
text: `benchmarks/pii_people.py` measures it on hand-written sentences this generator never produced.
A logistic regression (scikit-learn, at build time only; inference is a dot product in `_pii_people.py`) is fit
on every capitalised token, and the threshold that maximises token F1 on a held-out generated split is kept.

    python scripts/train_pii_people.py [--sentences 40000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np
from faker import Faker
from sklearn.linear_model import LogisticRegression

from keel.govern._pii_people import _WORD, FEATURES, _candidate, _lexicon, person_features

OUT = Path(__file__).resolve().parent.parent / "src" / "keel" / "govern" / "_data" / "people_model.json"
LOCALES = [
    "en_US", "en_GB", "en_IN", "en_KE", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE",
    "tr_TR", "yo_NG", "id_ID",
]  # fmt: skip

POSITIVE = [
    "{name} called about the late delivery.", "Please forward this to {name}.", "My name is {name}.",
    "Dear {first},", "Hi {first}, thanks for the quick reply.", "Regards,\n{name}", "Best,\n{first}",
    "The ticket was assigned to {name} on Monday.", "{title} {last} will join the call.",
    "I spoke with {title} {last} yesterday.", "{name}'s account was locked.", "According to {name}, it works.",
    "{first} and {first2} reviewed the change.", "cc: {name}, {name2}", "Customer: {name}", "Reported by {name}",
    "Signed, {name}", "Approved by {last}, {first}.", "The patient, {name}, was discharged.",
    "{name} ({job}) requested access.", "We met {name} at the {city} office.", "Contact person: {title} {name}",
    "Thanks {first}!", "{first} said the order never arrived.", "Ask {first} whether {first2} has the key.",
    "{NAME} - {job}", "Employee {name} started in {month}.", "The tenant {name} moved out.", "Hello {first},",
    "From: {name}", "Owner: {name}", "Meeting with {name} and {name2} at 10:00.", "{name} wrote: the app crashes.",
    "Applicant {name} was born in {city}.", "Can {first} call me back?", "{last} confirmed the refund.",
]  # fmt: skip
NEGATIVE = [
    "The order ships from {city} on {weekday}.", "{company} raised prices in {month}.", "Open Settings and click Save.",
    "The {product} comes in Forest Green.", "Python Software Foundation", "See Section 4.2 of the User Guide.",
    "Our office on {street} is closed.", "{city} is the capital.", "Use the Django ORM with PostgreSQL.",
    "The Windows Installer failed.", "Click New Project, then Import.", "Welcome to {company}!", "Monday works.",
    "{month} {day} is a holiday.", "The API returns JSON.", "Unicode Standard Annex", "Read The Fine Manual.",
    "Return Policy: items may be returned within 30 days.", "Shipping To {country}", "Error: File Not Found",
    "The {company} Support Team", "North America and Western Europe", "The Summit Trail Tent is waterproof.",
    "Visit {city} in {month}.", "Annual Report", "The Green Line runs to {city}.", "Chapter Three: Getting Started",
    "{product} Pro Max", "Table of Contents", "The Bank of {country} cut rates.", "Apple Pay and Google Pay work.",
    "Set LANG to C.UTF-8.", "Terms and Conditions apply.", "Grant Access to the Admin Console.",
]  # fmt: skip
JOBS = ["Engineer", "Manager", "Nurse", "Teacher", "Accountant", "Analyst"]
PRODUCTS = ["Harbor Kayak", "Ridge Pack", "Glacier Jacket", "Trail Stove", "Nova Phone", "Aero Lamp", "Canyon Tent"]


SYLLABLES = "ka ko ra ni to mi sa de ba lu chi ye wo fe zu an el or ish ta ma ju ri na go be".split()


def _invented(rng: random.Random) -> str:
    """A name no lexicon holds, so the classifier also learns names from their context."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _person(rng: random.Random, fk: Faker, part: str) -> str:
    if rng.random() < 0.15:
        return _invented(rng)
    return fk.first_name() if part == "first" else fk.last_name()


def _sentence(rng: random.Random, fakers: list[Faker]) -> tuple[str, list[tuple[int, int]]]:
    fk = rng.choice(fakers)
    template = rng.choice(POSITIVE if rng.random() < 0.6 else NEGATIVE)
    spans: list[tuple[int, int]] = []
    values = {
        "first": _person(rng, fk, "first"), "first2": _person(rng, fk, "first"), "last": _person(rng, fk, "last"),
        "title": rng.choice(["Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Mr", "Dr"]), "job": rng.choice(JOBS),
        "city": fk.city(), "company": fk.company(), "street": fk.street_name(), "country": fk.country(),
        "month": rng.choice(["January", "March", "May", "June", "August", "October"]), "day": str(rng.randint(1, 28)),
        "weekday": rng.choice(["Monday", "Tuesday", "Friday"]), "product": rng.choice(PRODUCTS),
    }  # fmt: skip
    values["name"] = f"{_person(rng, fk, 'first')} {_person(rng, fk, 'last')}"
    values["name2"] = f"{_person(rng, fk, 'first')} {_person(rng, fk, 'last')}"
    values["NAME"] = values["name"].upper()
    out = ""
    pos = 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += template[pos : m.start()]
        value = values[m.group(1)]
        if m.group(1) in ("name", "name2", "first", "first2", "last", "NAME"):
            spans.append((len(out), len(out) + len(value)))
        out += value
        pos = m.end()
    out += template[pos:]
    return out, spans


def _examples(sentences: list[tuple[str, list[tuple[int, int]]]]) -> tuple[np.ndarray, np.ndarray]:
    lexicon = _lexicon()
    rows, labels = [], []
    for text, spans in sentences:
        tokens = list(_WORD.finditer(text))
        for i, tok in enumerate(tokens):
            if _candidate(text, tok, lexicon):
                rows.append(person_features(text, tokens, i, lexicon))
                labels.append(int(any(s <= tok.start() and tok.end() <= e for s, e in spans)))
    return np.array(rows), np.array(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=40000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    fakers = []
    for i, locale in enumerate(LOCALES):
        fk = Faker(locale)
        fk.seed_instance(args.seed + i)
        fakers.append(fk)
    sentences = [_sentence(rng, fakers) for _ in range(args.sentences)]
    cut = int(len(sentences) * 0.8)
    x_train, y_train = _examples(sentences[:cut])
    x_test, y_test = _examples(sentences[cut:])
    model = LogisticRegression(C=1.0, max_iter=2000, fit_intercept=False).fit(x_train, y_train)
    p = model.predict_proba(x_test)[:, 1]
    best = max(
        (float(t) for t in np.arange(0.2, 0.9, 0.02)),
        key=lambda t: 2 * ((p >= t) & (y_test == 1)).sum() / max(1, (p >= t).sum() + (y_test == 1).sum()),
    )
    tp = int(((p >= best) & (y_test == 1)).sum())
    report = {
        "tokens": int(len(y_train)),
        "threshold": round(best, 2),
        "heldout_precision": round(tp / max(1, int((p >= best).sum())), 4),
        "heldout_recall": round(tp / max(1, int((y_test == 1).sum())), 4),
    }
    OUT.write_text(
        json.dumps(
            {
                "features": list(FEATURES),
                "weights": [round(float(w), 6) for w in model.coef_[0]],
                "threshold": round(best, 2),
                "trained": {"sentences": args.sentences, "seed": args.seed, "locales": LOCALES, **report},
            },
            indent=1,
        )
        + "\n"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
