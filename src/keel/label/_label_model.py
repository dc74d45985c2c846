"""The label model: Dawid–Skene EM over a label matrix, and majority vote to compare it with.

A generative model of the true class `y` (class priors) and of each labelling function's output given `y` (a
confusion matrix per function, abstention included as one more outcome), fitted without gold labels by
expectation–maximisation (Dawid & Skene 1979), initialised from majority vote; a small Dirichlet prior that
favours agreement keeps the classes from swapping. Written by hand rather than taken from Snorkel 0.10
(installable here with `--no-deps`, not a Keel dependency) because it measured better on the ticket task
(`benchmarks/weak_supervision.py --parts snorkel`: 0.972 vs Snorkel's `LabelModel` 0.879 and majority vote
0.900, fit 0.11 vs 0.69 CPU-s) and needs only numpy. The difference is abstention: Snorkel's `predict_proba`
omits abstains ("effectively assuming uniform distribution"), so a keyword rule that stays silent says nothing,
while here a silent refund rule is evidence against `refund`. Ties go to the class listed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keel.core.errors import InputError

__all__ = ["DawidSkene", "majority_vote"]

ABSTAIN_CODE = -1
Matrix = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]


def _check(votes: Matrix, k: int) -> None:
    if votes.ndim != 2:
        raise InputError(f"expected a label matrix of shape (rows, labelling functions); got shape {votes.shape}")
    if votes.size and (votes.min() < ABSTAIN_CODE or votes.max() >= k):
        raise InputError(
            f"expected votes in -1 (abstain) … {k - 1} for {k} classes; got {votes.min()} … {votes.max()}",
            hint="build the matrix with keel.label.weak.apply_lfs, which codes votes by class index",
        )


def majority_vote(votes: Matrix, k: int) -> tuple[Floats, npt.NDArray[np.int64]]:
    """Vote shares per class and the winning class per row (-1 where every function abstained).

    A tie goes to the class listed first (numpy's argmax takes the first maximum).
    """
    _check(votes, k)
    counts = np.zeros((votes.shape[0], k), dtype=np.float64)
    for j in range(votes.shape[1]):
        voted = votes[:, j] >= 0
        np.add.at(counts, (np.nonzero(voted)[0], votes[voted, j]), 1.0)
    total = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, total, out=np.full_like(counts, 1.0 / k), where=total > 0)
    hard = np.where(total[:, 0] > 0, counts.argmax(axis=1), ABSTAIN_CODE)
    return shares, hard.astype(np.int64)


@dataclass
class DawidSkene:
    """Class priors and one confusion matrix per labelling function, fitted by EM without gold labels.

    Args:
        n_classes: How many classes the votes are coded over.
        max_iter: EM iterations at most.
        tol: Stop when no parameter moves more than this.
        agreement_prior: Dirichlet pseudo-count added to each function's `vote == class` cells.
        smoothing: Dirichlet pseudo-count added to every cell (and to each class prior).
        model_abstain: Treat abstaining as an outcome whose rate depends on the class (default). False ignores
            abstentions; then a function that only ever votes one class carries no information and the model
            falls back to the priors (0.25–0.31 accuracy on the ticket task's one-class keyword rules).

    Examples:
        >>> votes = np.array([[0, 0, -1], [1, 1, 1], [0, -1, 1]], dtype=np.int16)
        >>> DawidSkene(2).fit(votes).predict(votes).tolist()
        [0, 1, 0]
    """

    n_classes: int
    max_iter: int = 200
    tol: float = 1e-6
    agreement_prior: float = 2.0
    smoothing: float = 0.1
    model_abstain: bool = True
    priors: Floats | None = None
    confusion: Floats | None = None  # (functions, classes, classes + 1): last column is "abstained"
    iterations: int = 0

    def _outcomes(self, votes: Matrix) -> npt.NDArray[np.int64]:
        # Abstain (-1) becomes outcome k, the last column of each confusion matrix.
        return np.where(votes < 0, self.n_classes, votes).astype(np.int64)

    def _m_step(self, outcomes: npt.NDArray[np.int64], q: Floats) -> Floats:
        k, m = self.n_classes, outcomes.shape[1]
        self.priors = (q.sum(axis=0) + self.smoothing) / (q.shape[0] + k * self.smoothing)
        confusion = np.empty((m, k, k + 1))
        eye = np.zeros((k, k + 1))
        eye[:, :k] = np.eye(k) * self.agreement_prior
        for j in range(m):
            one_hot = np.zeros((outcomes.shape[0], k + 1))
            one_hot[np.arange(outcomes.shape[0]), outcomes[:, j]] = 1.0
            counts = q.T @ one_hot + self.smoothing + eye
            if not self.model_abstain:
                counts[:, k] = 0.0  # normalised over the votes only; the abstain column is set to 1 (log 0) below
            confusion[j] = counts / counts.sum(axis=1, keepdims=True)
            if not self.model_abstain:
                confusion[j][:, k] = 1.0
        self.confusion = confusion
        return confusion

    def _posterior(self, outcomes: npt.NDArray[np.int64]) -> Floats:
        assert self.priors is not None and self.confusion is not None, "fit the model first"
        log_q = np.tile(np.log(self.priors), (outcomes.shape[0], 1))
        log_confusion = np.log(self.confusion)
        for j in range(outcomes.shape[1]):
            log_q += log_confusion[j][:, outcomes[:, j]].T
        log_q -= log_q.max(axis=1, keepdims=True)
        q = np.exp(log_q)
        return np.asarray(q / q.sum(axis=1, keepdims=True), dtype=np.float64)

    def fit(self, votes: Matrix) -> DawidSkene:
        """Fit priors and confusion matrices to `votes` (rows × functions, -1 = abstain); returns self."""
        _check(votes, self.n_classes)
        if votes.shape[1] == 0:
            raise InputError("expected at least one labelling function; the label matrix has no columns")
        outcomes = self._outcomes(votes)
        q, _ = majority_vote(votes, self.n_classes)
        self.iterations, self.confusion = 0, None
        before: Floats | None = None
        while self.iterations < self.max_iter:
            self.iterations += 1
            after = self._m_step(outcomes, q)
            q = self._posterior(outcomes)
            if before is not None and float(np.abs(after - before).max()) < self.tol:
                break
            before = after
        return self

    def predict_proba(self, votes: Matrix) -> Floats:
        """P(class | votes) per row, shape (rows, classes)."""
        _check(votes, self.n_classes)
        return self._posterior(self._outcomes(votes))

    def predict(self, votes: Matrix) -> npt.NDArray[np.int64]:
        """The most probable class per row; -1 where every function abstained; ties to the first class."""
        hard = self.predict_proba(votes).argmax(axis=1)
        return np.where((votes >= 0).any(axis=1), hard, ABSTAIN_CODE).astype(np.int64)
