"""Train the gateway's prompt-injection model: hashed n-grams + logistic regression (deterministic).

Reads scripts/data/injection_train.txt (hand-written: injections in six languages, benign
customer-support requests including near-misses such as "ignore my previous email"), adds each
example wrapped in a benign greeting or sign-off, normalises every text as the gateway does,
hashes character 3-5-grams and word 1-2-grams into 2^15 buckets, and fits a logistic regression
(scikit-learn, liblinear). The threshold is the lowest that keeps out-of-fold false positives on
the benign examples at or under 1% (folds keep an example and its wrapped copy together).
Writes src/keel/serve/data/injection_model.npz (float16 weights). The held-out set
(benchmarks/data/injection_heldout.txt) is never read here.

    PYTHONPATH=src python scripts/train_injection.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

from keel.serve._injection import hashed_features, normalise_prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection_corpus import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "scripts" / "data" / "injection_train.txt"
OUT = ROOT / "src" / "keel" / "serve" / "data" / "injection_model.npz"
BUCKETS = 2**16
SEED = 20261206
MAX_FALSE_POSITIVES = 0.01
GENERATED = 4000  # injections, and as many benign requests (scripts/injection_corpus.py)
C = 16.0  # chosen on the dev split among 1, 4, 16, 64 (recall at 1% false positives)
WRAPS = [
    ("Hi there. ", ""),
    ("", " Thanks!"),
    ("Hello, I have a question about my order. ", ""),
    ("", " Kind regards, Sam"),
]


def examples() -> list[tuple[str, int]]:
    """The labelled lines, then each again wrapped in a greeting or sign-off (same order)."""
    rows = []
    for line in DATA.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, text = line.split("\t", 1)
        rows.append((text, int(label)))
    rng = random.Random(SEED)
    wrapped = [(prefix + text + suffix, label) for text, label in rows for prefix, suffix in [rng.choice(WRAPS)]]
    return rows + wrapped


def matrix(texts: list[str]) -> object:
    """A sparse matrix of the hashed features of the normalised texts."""
    from scipy.sparse import csr_matrix

    data, indices, indptr = [], [], [0]
    for text in texts:
        features = hashed_features(normalise_prompt(text), BUCKETS)
        indices += list(features)
        data += list(features.values())
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(texts), BUCKETS))


def main() -> None:
    """Fit, pick the threshold on the hand-written lines out of fold, write the model; print one JSON line."""
    from scipy.sparse import vstack
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    hand = examples()
    generated = generate(GENERATED, GENERATED, SEED)
    x_hand, x_gen = matrix([t for t, _ in hand]), matrix([t for t, _ in generated])
    y_hand = np.array([label for _, label in hand])
    y_gen = np.array([label for _, label in generated])

    def model() -> LogisticRegression:
        return LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=2000)

    # Dev split: each fold of hand-written lines (a line and its wrapped copy together) is scored by a model
    # fitted on the other folds plus every generated example, so the threshold is chosen on hand-written text
    # the model did not see, written apart from the generator's clauses.
    groups = np.arange(len(hand)) % (len(hand) // 2)
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=SEED)
    oof = np.zeros(len(hand))
    for train, test in folds.split(x_hand, y_hand, groups):
        fitted = model().fit(vstack([x_hand[train], x_gen]), np.concatenate([y_hand[train], y_gen]))
        oof[test] = fitted.predict_proba(x_hand[test])[:, 1]
    benign = np.sort(oof[y_hand == 0])
    threshold = float(max(0.5, benign[int(np.ceil((1 - MAX_FALSE_POSITIVES) * len(benign))) - 1] + 1e-3))
    recall = float(np.mean(oof[y_hand == 1] >= threshold))
    final = model().fit(vstack([x_hand, x_gen]), np.concatenate([y_hand, y_gen]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("wb") as f:
        np.savez_compressed(
            f,
            weights=final.coef_[0].astype(np.float16),
            intercept=np.float64(final.intercept_[0]),
            threshold=np.float64(round(threshold, 4)),
        )
    print(
        json.dumps(
            {
                "hand_written": len(hand),
                "generated": len(generated),
                "injections": int(y_hand.sum() + y_gen.sum()),
                "threshold": round(threshold, 4),
                "dev_recall": round(recall, 4),
                "dev_false_positive_rate": round(float(np.mean(oof[y_hand == 0] >= threshold)), 4),
                "bytes": OUT.stat().st_size,
            }
        )
    )


if __name__ == "__main__":
    main()
