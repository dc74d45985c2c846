"""Weak supervision: labelling functions, their label matrix and statistics, and a label model that combines them.

A labelling function (LF) looks at one row and returns a class or `ABSTAIN`. LFs are Python functions under
the `@labeling_function()` decorator, or YAML entries: keywords, a regex, or a model's answer to a prompt
through any OpenAI-compatible endpoint (Keel's gateway, vLLM, a hosted API; requests run concurrently and
every answer is cached on disk by (model, prompt, input)). Applying LFs gives a label matrix (rows × LFs, class
index or -1). The label model is a hand-written Dawid–Skene EM (`_label_model.py` says why: it measured
better than Snorkel's `LabelModel` on the same matrices); it outputs a probability per class, a hard label and
the LFs that voted, and `weak_label_version` commits them as a dataset version derived from its source. Nothing
here trains a classifier on the weak labels; that is the user's next step (see benchmarks/weak_supervision.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keel.core.errors import InputError, NotFoundError
from keel.core.settings import read_config_file, read_text_file
from keel.label._label_model import ABSTAIN_CODE, DawidSkene, majority_vote

__all__ = [
    "ABSTAIN",
    "DawidSkene",
    "LFSet",
    "LFStats",
    "LabelMatrix",
    "LabelingFunction",
    "ModelLF",
    "WeakLabels",
    "WeakLabelRun",
    "apply_lfs",
    "combine",
    "keyword_lf",
    "labeling_function",
    "lf_summary",
    "load_lfs",
    "majority_vote",
    "regex_lf",
    "weak_label_version",
]

ABSTAIN: Final = None
"""What a labelling function returns when it has no opinion (returning None is the same)."""

Row = dict[str, Any]
Progress = Callable[[int, int], None]  # (rows done, rows) after each labelling function


@dataclass(frozen=True)
class LabelingFunction:
    """One labelling function: `fn(value)` returns a class name or None (abstain).

    `value` is the row's `field` column, or the whole row (a dict) when `field` is None.
    """

    name: str
    fn: Callable[[Any], str | None]
    field: str | None = "text"
    kind: str = "python"

    def apply(self, rows: Sequence[Row]) -> list[str | None]:
        """The function's vote on each row."""
        if self.field is None:
            return [self.fn(row) for row in rows]
        return [self.fn(row.get(self.field)) for row in rows]


def labeling_function(
    name: str | None = None, *, field: str | None = "text"
) -> Callable[[Callable[[Any], str | None]], LabelingFunction]:
    """Make a Python function a labelling function (it returns a class name or `ABSTAIN`).

    Examples:
        >>> @labeling_function()
        ... def mentions_refund(text):
        ...     return "refund" if "refund" in text.lower() else ABSTAIN
        >>> mentions_refund.apply([{"text": "Refund me"}, {"text": "hi"}])
        ['refund', None]
    """

    def wrap(fn: Callable[[Any], str | None]) -> LabelingFunction:
        return LabelingFunction(name or fn.__name__, fn, field, "python")

    return wrap


def keyword_lf(name: str, keywords: Sequence[str], label: str, *, field: str = "text") -> LabelingFunction:
    """Votes `label` when any keyword occurs as whole words (case-insensitive), else abstains."""
    if not keywords:
        raise InputError(f"labelling function {name!r}: expected at least one keyword; got none")
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in keywords) + r")\b", re.IGNORECASE)
    return LabelingFunction(name, lambda v: label if v and pattern.search(str(v)) else None, field, "keywords")


def regex_lf(name: str, regex: str, label: str, *, field: str = "text", ignore_case: bool = True) -> LabelingFunction:
    """Votes `label` when `regex` matches anywhere in the value, else abstains."""
    try:
        pattern = re.compile(regex, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise InputError(
            f"labelling function {name!r}: expected a valid regular expression; {regex!r}: {exc}"
        ) from None
    return LabelingFunction(name, lambda v: label if v and pattern.search(str(v)) else None, field, "regex")


class ModelSettings(BaseModel):
    """Where a model labelling function sends its prompts (any OpenAI-compatible chat endpoint)."""

    model_config = ConfigDict(extra="forbid")
    base_url: str
    model: str = Field(min_length=1)
    api_key: str = "not-needed"
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(16, ge=1)
    concurrency: int = Field(8, ge=1, le=256)
    timeout: float = Field(60.0, gt=0)
    cache_dir: Path | None = None


class ModelLF:
    """Asks a model to classify each row; its answer names a class (or, with `label`, says yes to it).

    Prompts are sent `concurrency` at a time; answers are cached on disk by sha256 of (base_url, model, prompt
    with its input, sampling settings), so a rerun sends no request. An answer that names no class abstains.
    """

    kind = "model"

    def __init__(
        self, name: str, prompt: str, classes: Sequence[str], settings: ModelSettings, *,
        label: str | None = None, field: str = "text",
    ) -> None:  # fmt: skip
        self.name, self.prompt, self.classes, self.settings = name, prompt, list(classes), settings
        self.label, self.field = label, field
        self.requests = 0  # sent this process (cache misses)

    def _request(self, value: str) -> dict[str, Any]:
        text = self.prompt.replace("{classes}", ", ".join(self.classes)).replace("{text}", value)
        s = self.settings
        return {"base_url": s.base_url, "model": s.model, "messages": [{"role": "user", "content": text}],
                "temperature": s.temperature, "max_tokens": s.max_tokens, "seed": 0}  # fmt: skip

    def _answer_to_class(self, answer: str | None) -> str | None:
        if not answer:
            return None
        words = re.findall(r"[a-z0-9_]+", answer.lower())
        if self.label is not None:
            return self.label if words[:1] == ["yes"] else None
        for cls in self.classes:  # an exact answer first, then the first class the answer names
            if answer.strip().strip(".").lower() == cls.lower():
                return cls
        for cls in self.classes:
            if re.search(r"\b" + re.escape(cls.lower()) + r"\b", answer.lower()):
                return cls
        return None

    def apply(self, rows: Sequence[Row]) -> list[str | None]:
        """One vote per row, from the cache or the endpoint."""
        from openai import OpenAI, OpenAIError

        from keel.curate._augment_llm import GenerationCache

        s = self.settings
        cache = GenerationCache(s.cache_dir) if s.cache_dir is not None else None
        requests = [self._request(str(row.get(self.field) or "")) for row in rows]
        keys = [GenerationCache.key(r) for r in requests]
        answers: list[str | None] = [cache.get(key) if cache else None for key in keys]
        todo = [i for i, a in enumerate(answers) if a is None]
        if todo:
            client = OpenAI(base_url=s.base_url, api_key=s.api_key, timeout=s.timeout, max_retries=2)

            def call(request: dict[str, Any]) -> str | Exception:
                body = {k: v for k, v in request.items() if k != "base_url"}
                try:
                    response = client.chat.completions.create(**body)
                except OpenAIError as exc:
                    return exc
                return (response.choices[0].message.content or "").strip() if response.choices else ""

            with client, ThreadPoolExecutor(max_workers=min(s.concurrency, len(todo))) as pool:
                results = list(pool.map(call, [requests[i] for i in todo]))
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise InputError(
                    f"labelling function {self.name!r}: {len(failed)} of {len(todo)} requests to {s.base_url} "
                    f"(model {s.model!r}) failed; first: {type(failed[0]).__name__}: {str(failed[0])[:200]}",
                    hint="check base_url, model and api_key (the server must speak the OpenAI chat API)",
                )
            self.requests += len(todo)
            for i, result in zip(todo, results, strict=True):
                answers[i] = str(result)
                if cache is not None:
                    cache.put(keys[i], requests[i], str(result))
        return [self._answer_to_class(a) for a in answers]


AnyLF = LabelingFunction | ModelLF


@dataclass
class LFSet:
    """Labelling functions loaded from one file, and the classes they vote over (None: inferred from votes)."""

    lfs: list[AnyLF]
    classes: list[str] | None = None
    source: str = ""
    digest: str = ""


# --- loading -------------------------------------------------------------------------------


class _LFEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    label: str | None = None
    keywords: list[str] | None = None
    regex: str | None = None
    ignore_case: bool = True
    prompt: str | None = None
    field: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> _LFEntry:
        kinds = [k for k in ("keywords", "regex", "prompt") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"expected exactly one of keywords, regex or prompt; got {kinds or 'none'}")
        if kinds[0] != "prompt" and not self.label:
            raise ValueError(f"a {kinds[0]} labelling function needs `label:` (the class it votes for)")
        return self


class _LFFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classes: list[str] | None = None
    field: str = "text"
    model: ModelSettings | None = None
    lfs: list[_LFEntry] = Field(min_length=1)


def _load_yaml(path: Path, cache_dir: Path | None) -> LFSet:
    # The shared reader: one line for bytes that are not UTF-8, a syntax error, a repeated key or an alias bomb.
    raw = read_config_file(path, "labelling-function file", holds="a mapping with lfs:", error=InputError)
    try:
        spec = _LFFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"{path}: {exc.error_count()} problem(s): {problems}",
                         hint="see docs/weak-supervision.md for the file's fields") from None  # fmt: skip
    names = [e.name for e in spec.lfs]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: expected unique labelling function names; got {names}")
    lfs: list[AnyLF] = []
    for e in spec.lfs:
        where = e.field or spec.field
        if e.keywords is not None:
            lfs.append(keyword_lf(e.name, e.keywords, str(e.label), field=where))
        elif e.regex is not None:
            lfs.append(regex_lf(e.name, e.regex, str(e.label), field=where, ignore_case=e.ignore_case))
        else:
            if spec.model is None or not spec.classes:
                raise InputError(f"{path}: labelling function {e.name!r} asks a model; the file needs `model:` "
                                 "(base_url, model) and `classes:`")  # fmt: skip
            settings = spec.model
            if settings.cache_dir is None and cache_dir is not None:
                settings = settings.model_copy(update={"cache_dir": cache_dir})
            lfs.append(ModelLF(e.name, str(e.prompt), spec.classes, settings, label=e.label, field=where))
    return LFSet(lfs, spec.classes)


def _load_python(path: Path) -> LFSet:
    module_name = f"keel_user_lfs_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"expected a Python file of labelling functions; cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    lfs: list[AnyLF] = [v for v in vars(module).values() if isinstance(v, LabelingFunction | ModelLF)]
    if not lfs:
        raise InputError(f"{path}: expected functions decorated with @labeling_function(); found none",
                         hint="from keel.label.weak import labeling_function, ABSTAIN")  # fmt: skip
    classes = getattr(module, "CLASSES", None)
    return LFSet(lfs, [str(c) for c in classes] if classes is not None else None)


def load_lfs(path: str | Path, *, cache_dir: Path | None = None) -> LFSet:
    """Labelling functions from a `.py` file (decorated functions, optional `CLASSES`) or a `.yaml` file.

    Args:
        path: The file.
        cache_dir: Where model answers are cached when the YAML does not say (the workspace's cache).

    Raises:
        InputError: A missing file, an unknown suffix, or a file with problems (all of them listed).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"expected a labelling-function file (.py or .yaml); {path} does not exist")
    text = read_text_file(path, "labelling-function file", error=InputError)
    if path.suffix == ".py":
        loaded = _load_python(path)
    elif path.suffix in (".yaml", ".yml"):
        loaded = _load_yaml(path, cache_dir)
    else:
        raise InputError(f"expected a .py or .yaml labelling-function file; got {path.name!r}")
    names = [lf.name for lf in loaded.lfs]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: expected unique labelling function names; got {names}")
    loaded.source, loaded.digest = str(path), hashlib.sha256(text.encode()).hexdigest()
    return loaded


# --- the label matrix and its statistics ----------------------------------------------------


@dataclass
class LabelMatrix:
    """Votes of m labelling functions on n rows: class index, or -1 for abstain (int16, dense).

    Most cells of a real matrix are abstentions; `to_sparse` gives the CSR form (class index + 1, 0 = abstain).
    """

    votes: npt.NDArray[np.int16]
    classes: list[str]
    lf_names: list[str]

    def to_sparse(self) -> Any:
        """A scipy CSR matrix of `votes + 1` (0 = abstain)."""
        from scipy.sparse import csr_matrix

        return csr_matrix(self.votes.astype(np.int32) + 1)


def apply_lfs(
    lfs: Sequence[AnyLF], rows: Sequence[Row], classes: Sequence[str] | None = None, *, progress: Progress | None = None
) -> LabelMatrix:
    """Apply every labelling function to every row.

    Args:
        lfs: The labelling functions, in column order.
        rows: The rows (dicts of column values).
        classes: The classes in order (ties go to the first); default the sorted set of classes voted.
        progress: Called after each function with (functions done, functions).

    Raises:
        InputError: A function voted a class not in `classes`.
    """
    columns = []
    for done, lf in enumerate(lfs, 1):
        out = lf.apply(rows)
        if len(out) != len(rows):
            raise InputError(f"labelling function {lf.name!r} returned {len(out)} votes for {len(rows)} rows")
        columns.append(out)
        if progress is not None:
            progress(done, len(lfs))
    voted = sorted({v for col in columns for v in col if v is not None})
    order = list(classes) if classes is not None else voted
    index = {c: i for i, c in enumerate(order)}
    unknown = [v for v in voted if v not in index]
    if unknown:
        bad = next(lf.name for lf, col in zip(lfs, columns, strict=True) if any(v in unknown for v in col))
        raise InputError(f"labelling function {bad!r} voted {unknown}, which are not among the classes {order}",
                         hint="add them to `classes` or fix the function's return values")  # fmt: skip
    votes = np.full((len(rows), len(lfs)), ABSTAIN_CODE, dtype=np.int16)
    for j, col in enumerate(columns):
        votes[:, j] = [ABSTAIN_CODE if v is None else index[v] for v in col]
    return LabelMatrix(votes, order, [lf.name for lf in lfs])


@dataclass(frozen=True, slots=True)
class LFStats:
    """One labelling function over a label matrix (fractions of all rows, as Snorkel's `LFAnalysis`)."""

    name: str
    kind: str
    polarity: list[str]  # the classes it voted
    coverage: float  # voted
    overlap: float  # voted, and another function voted too
    conflict: float  # voted, and another function voted a different class
    gold_votes: int  # votes on rows with a gold label
    accuracy: float | None  # of those votes, the share equal to gold


def lf_summary(
    matrix: LabelMatrix, gold: Sequence[str | None] | None = None, kinds: Sequence[str] = ()
) -> list[LFStats]:
    """Coverage, overlap, conflict and (where gold labels exist) empirical accuracy of each function."""
    v = matrix.votes
    n = max(v.shape[0], 1)
    voted = v >= 0
    n_voted = voted.sum(axis=1)
    index = {c: i for i, c in enumerate(matrix.classes)}
    gold_codes = None
    if gold is not None:
        gold_codes = np.array([index.get(g, -2) if g is not None else -1 for g in gold], dtype=np.int64)
    out = []
    for j, name in enumerate(matrix.lf_names):
        col = v[:, j]
        mine = voted[:, j]
        others = n_voted - mine
        # Another function voted a class other than this one's vote on the row.
        differs = np.zeros(v.shape[0], dtype=bool)
        for other in range(v.shape[1]):
            if other != j:
                differs |= voted[:, other] & (v[:, other] != col)
        accuracy, gold_votes = None, 0
        if gold_codes is not None:
            has = mine & (gold_codes != -1)
            gold_votes = int(has.sum())
            accuracy = float((col[has] == gold_codes[has]).mean()) if gold_votes else None
        out.append(LFStats(
            name=name, kind=kinds[j] if j < len(kinds) else "python",
            polarity=[matrix.classes[c] for c in np.unique(col[mine]).tolist()],
            coverage=float(mine.sum() / n), overlap=float((mine & (others > 0)).sum() / n),
            conflict=float((mine & differs).sum() / n), gold_votes=gold_votes, accuracy=accuracy,
        ))  # fmt: skip
    return out


# --- combining -----------------------------------------------------------------------------


@dataclass
class WeakLabels:
    """The label model's output per row: class probabilities, the hard label (None: no function voted) and voters."""

    classes: list[str]
    probs: npt.NDArray[np.float64]
    labels: list[str | None]
    voters: list[list[str]]
    majority: list[str | None]  # majority vote, for comparison
    model: DawidSkene

    def accuracy(self, gold: Sequence[str | None]) -> dict[str, Any]:
        """Label model vs majority vote on the rows with a gold label (a row no function voted on counts wrong)."""
        pairs = [(g, lab, mv) for g, lab, mv in zip(gold, self.labels, self.majority, strict=True) if g is not None]
        if not pairs:
            return {"gold_rows": 0}
        covered = [p for p in pairs if p[1] is not None]
        return {
            "gold_rows": len(pairs),
            "covered": len(covered),
            "label_model": sum(g == lab for g, lab, _ in pairs) / len(pairs),
            "majority_vote": sum(g == mv for g, _, mv in pairs) / len(pairs),
            "label_model_on_covered": sum(g == lab for g, lab, _ in covered) / len(covered) if covered else None,
            "majority_vote_on_covered": sum(g == mv for g, _, mv in covered) / len(covered) if covered else None,
        }


def combine(matrix: LabelMatrix, *, model: DawidSkene | None = None) -> WeakLabels:
    """Fit the label model (Dawid–Skene EM unless a fitted `model` is given) and label every row."""
    k = len(matrix.classes)
    if k == 0:
        raise InputError("no labelling function voted on any row: there is nothing to combine",
                         hint="check the functions against a few rows (`keel label weak analyze`)")  # fmt: skip
    if model is None:
        model = DawidSkene(k).fit(matrix.votes)
    probs = model.predict_proba(matrix.votes)
    hard = model.predict(matrix.votes)
    _, mv = majority_vote(matrix.votes, k)
    names = matrix.lf_names
    voters = [[names[j] for j in np.nonzero(row >= 0)[0].tolist()] for row in matrix.votes]
    labels = [matrix.classes[c] if c >= 0 else None for c in hard.tolist()]
    majority = [matrix.classes[c] if c >= 0 else None for c in mv.tolist()]
    return WeakLabels(matrix.classes, probs, labels, voters, majority, model)


# --- on a dataset version ------------------------------------------------------------------


@dataclass
class WeakLabelRun:
    """What `weak_label_version` did: the LF table, the accuracy on gold rows, and the version it committed."""

    source: str
    version: str | None
    new: bool
    rows: int
    covered: int
    classes: list[str]
    lfs: list[LFStats]
    gold: dict[str, Any] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _table_rows(table: Any) -> list[Row]:
    rows: list[Row] = table.to_pylist()
    return rows


def weak_label_version(
    store: Any,
    ref: str,
    lfs: LFSet,
    *,
    gold: str | None = None,
    to: str | None = None,
    commit: bool = True,
    message: str | None = None,
    progress: Progress | None = None,
) -> WeakLabelRun:
    """Label a dataset version with labelling functions and, unless `commit=False`, commit the labelled rows.

    Each committed row gains `weak_label` (None where no function voted), `weak_prob` (its probability),
    `weak_probs` (JSON: class → probability), `weak_votes` (JSON: function → class) and `weak_lfs` (the
    functions that voted). The version is derived from `ref` in lineage, named `to` (default: `ref`'s dataset).

    Raises:
        InputError: `gold` is not a column, or the functions fail (see `apply_lfs`).
    """
    import pyarrow as pa

    from keel.data import commit_version, get_version, list_versions, load_version

    source = get_version(store, ref)
    table = load_version(store, source)
    if gold is not None and gold not in table.column_names:
        raise InputError(f"expected a gold-label column {gold!r} in {source.ref}; its columns: {table.column_names}")
    rows = _table_rows(table)
    matrix = apply_lfs(lfs.lfs, rows, lfs.classes, progress=progress)
    weak = combine(matrix)
    gold_values = None if gold is None else [None if g is None else str(g) for g in table.column(gold).to_pylist()]
    stats = lf_summary(matrix, gold_values, [lf.kind for lf in lfs.lfs])
    counts: dict[str, int] = {}
    for lab in weak.labels:
        counts[lab or "(none)"] = counts.get(lab or "(none)", 0) + 1
    run = WeakLabelRun(
        source=source.ref, version=None, new=False, rows=len(rows), covered=sum(lab is not None for lab in weak.labels),
        classes=matrix.classes, lfs=stats, gold=weak.accuracy(gold_values) if gold_values else {},
        label_counts=dict(sorted(counts.items())),
    )  # fmt: skip
    if not commit:
        return run
    hard_prob = [
        float(p[matrix.classes.index(lab)]) if lab else None for p, lab in zip(weak.probs, weak.labels, strict=True)
    ]
    columns = {
        "weak_label": pa.array(weak.labels, pa.string()),
        "weak_prob": pa.array(hard_prob, pa.float64()),
        "weak_probs": pa.array(
            [json.dumps(dict(zip(matrix.classes, np.round(p, 6).tolist(), strict=True))) for p in weak.probs],
            pa.string(),
        ),  # fmt: skip
        "weak_votes": pa.array(
            [
                json.dumps({matrix.lf_names[j]: matrix.classes[c] for j, c in enumerate(row) if c >= 0})
                for row in matrix.votes.tolist()
            ],
            pa.string(),
        ),  # fmt: skip
        "weak_lfs": pa.array(weak.voters, pa.list_(pa.string())),
    }
    for name, values in columns.items():
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, values)
    target = to or source.name
    parents = [source.ref]
    try:
        latest = list_versions(store, target)[0]
    except NotFoundError:
        latest = None
    if latest is not None and latest.ref != source.ref:
        # The target's latest version first: a rerun that labels the same rows the same way commits nothing new.
        parents.insert(0, latest.ref)
    version, new = commit_version(
        store, target, table,
        message=message or f"weak labels from {len(lfs.lfs)} labelling functions ({Path(lfs.source).name}) on "
        f"{source.ref}",
        parents=parents,
        producer={"command": "label weak apply", "source": source.ref, "lfs_file": Path(lfs.source).name,
                  "lfs_sha256": lfs.digest, "lfs": matrix.lf_names, "classes": matrix.classes,
                  "label_model": "dawid-skene", "gold": gold},
    )  # fmt: skip
    run.version, run.new = version.ref, new
    return run
