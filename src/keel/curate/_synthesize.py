"""`synthesize`: question/answer pairs and question/context/answer triples from a dataset version's documents.

Question types: `factual` (one fact of one context), `multi_hop` (a two-part question whose parts are answered
by two documents sharing a content word; both contexts are given) and `unanswerable` (a question whose correct
answer is a refusal, asked over a context of another document). Questions come from the offline `extractive`
writer (`_synth_extractive`) or from a model (a registered NAME@vN in process, or any OpenAI-compatible
endpoint) driven by a prompt version that must read `context` and `question_type` and answer JSON. Filters,
each counted: malformed model output, length bounds, near-duplicate questions (word 3-gram Jaccard), and the
offline groundedness judge: answerable questions must be supported by their context, unanswerable ones not.
The rows commit as a version derived from the source version, each naming its source records, generator,
model and prompt version; the same source, options and seed give the same rows, byte for byte.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json, sha256_hex
from keel.curate._augment_lineage import jaccard, word_shingles
from keel.curate._generate import (
    ChatBackend,
    GenerationCache,
    LocalModelBackend,
    OpenAIBackend,
    generate_cached,
    workspace_cache_root,
)
from keel.curate._synth_extractive import extract_questions, key_terms, split_chunks
from keel.data import DatasetVersion, commit_version, get_version, load_version
from keel.store import Store

__all__ = [
    "DEFAULT_PROMPT",
    "QUESTION_TYPES",
    "REFUSAL",
    "SynthesisReport",
    "SynthesizeOptions",
    "parse_generation",
    "synthesize",
]

QuestionType = Literal["factual", "multi_hop", "unanswerable"]
QUESTION_TYPES: tuple[QuestionType, ...] = ("factual", "multi_hop", "unanswerable")
REFUSAL = "The context does not say."
EXTRACTIVE = "extractive/1"  # bump when the extractive writer's output changes
DEFAULT_PROMPT = "synthesize-qa"
DEFAULT_TEMPLATE = """Write one {{ question_type }} question about the context below, for testing a \
question-answering system. {{ instructions }}
Reply with one JSON object and nothing else: {"question": "...", "answer": "..."}

Context:
{{ context }}"""
INSTRUCTIONS: dict[str, str] = {
    "factual": "Ask about one fact the context states; the answer is a short span copied from the context.",
    "multi_hop": "The context holds two passages. Ask one question that needs a fact from each passage; the "
    "answer gives both facts, each copied from its passage.",
    "unanswerable": f"Ask a question on the context's topic that the context does not answer; the answer is "
    f"exactly: {REFUSAL}",
}
REQUIRED_VARIABLES = ("context", "question_type")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class SynthesizeOptions:
    """What to generate, with what, and how strictly to filter it.

    `per_doc` is the number of questions of each type asked per document; `limit` caps the rows kept.
    The model generator takes `model` (a registered NAME@vN, loaded in process) or `base_url` and
    `model_name` (an OpenAI-compatible endpoint), and `prompt` (a prompt ref; default `synthesize-qa`).
    """

    types: tuple[str, ...] = QUESTION_TYPES
    per_doc: int = 2
    limit: int | None = None
    seed: int = 0
    generator: Literal["extractive", "model"] = "extractive"
    prompt: str | None = None
    model: str | None = None
    base_url: str | None = None
    model_name: str | None = None
    api_key: str = "not-needed"
    text_column: str = "text"
    chunk_chars: int = 2000
    question_words: tuple[int, int] = (4, 60)
    max_answer_words: int = 40
    duplicate_jaccard: float = 0.8
    support_threshold: float = 0.5
    judge: bool = True
    temperature: float = 0.0
    max_tokens: int = 256
    concurrency: int = 8


@dataclass
class SynthesisReport:
    """What was generated, what each filter dropped, and the committed version."""

    source: str
    generator: str
    prompt: str | None
    model: str | None
    generated: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> type -> rows
    requests: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    version: DatasetVersion | None = None
    created: bool = False

    def to_json(self) -> dict[str, Any]:
        """The report as `keel data synthesize --json` prints it."""
        out = {k: v for k, v in asdict(self).items() if k not in ("version",)}
        out["version"] = self.version.ref if self.version else None
        out["rows"] = sum(self.kept.values())
        return out


@dataclass
class _Draft:
    """One generated question before filtering."""

    qtype: str
    question: str
    answer: str
    contexts: list[str]
    source_ids: list[str]
    checks: list[tuple[str, str]]  # (statement, context) pairs the judge must accept (or, unanswerable, reject)
    meta: dict[str, Any] = field(default_factory=dict)


# --- model output ------------------------------------------------------------------------------


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_generation(text: str) -> tuple[str, str] | str:
    """(question, answer) from a model's reply, or the reason it is unusable: `malformed_json`, `missing_fields`.

    Takes the outermost `{…}` of the reply (models wrap JSON in prose or code fences).

    Examples:
        >>> parse_generation('Sure: {"question": "Who?", "answer": "Ann"}')
        ('Who?', 'Ann')
        >>> parse_generation("no json here")
        'malformed_json'
    """
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        return "malformed_json"
    try:
        value = json.loads(body[start : end + 1])
    except ValueError:
        return "malformed_json"
    if not isinstance(value, dict):
        return "malformed_json"
    question, answer = value.get("question"), value.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str) or not question.strip() or not answer.strip():
        return "missing_fields"
    return question.strip(), answer.strip()


# --- documents ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Doc:
    id: str
    chunks: list[str]
    terms: frozenset[str]


def _documents(store: Store, source: DatasetVersion, options: SynthesizeOptions) -> list[_Doc]:
    names = source.schema.names
    if options.text_column not in names or "id" not in names:
        raise InputError(
            f"expected {source.ref} to have `id` and `{options.text_column}` columns; it has {', '.join(names)}",
            hint="name the text column with --text-column",
        )
    table = load_version(store, source, columns=["id", options.text_column])
    docs, seen = [], set()
    for rid, text in zip(table.column("id").to_pylist(), table.column(options.text_column).to_pylist(), strict=True):
        if not isinstance(text, str) or not text.strip() or text in seen:
            continue
        seen.add(text)
        docs.append(_Doc(rid, split_chunks(text, options.chunk_chars), frozenset(key_terms(text))))
    return docs


def _partner(docs: list[_Doc], i: int, rng: random.Random) -> int | None:
    """Another document sharing the most content words with document i (ties broken by rng), or None."""
    best: list[int] = []
    most = 0
    for j, other in enumerate(docs):
        if j == i:
            continue
        shared = len(docs[i].terms & other.terms)
        if shared > most:
            best, most = [j], shared
        elif shared == most and shared:
            best.append(j)
    return rng.choice(best) if best else None


def _other(docs: list[_Doc], i: int, rng: random.Random) -> int | None:
    """A different document, chosen by rng (the context an unanswerable question is asked over)."""
    choices = [j for j in range(len(docs)) if j != i]
    return rng.choice(choices) if choices else None


# --- the extractive generator ---------------------------------------------------------------------


def _extractive_drafts(docs: list[_Doc], i: int, options: SynthesizeOptions) -> list[_Draft]:
    doc = docs[i]
    rng = random.Random(f"{options.seed}\x00{doc.id}")
    found = [(c, q) for c in doc.chunks for q in extract_questions(c, options.per_doc, rng)][: options.per_doc]
    drafts: list[_Draft] = []
    for chunk, q in found if "factual" in options.types else []:
        meta = {"answer_start": q.answer_start, "form": q.form, "statement": q.statement}
        drafts.append(_Draft("factual", q.question, q.answer, [chunk], [doc.id], [(q.statement, chunk)], meta))
    if "multi_hop" in options.types and (j := _partner(docs, i, rng)) is not None:
        other = docs[j]
        theirs = [(c, q) for c in other.chunks for q in extract_questions(c, options.per_doc, rng)]
        for k, ((ca, a), (cb, b)) in enumerate(zip(found, theirs, strict=False)):
            if a.statement == b.statement or ca == cb:  # a near-copy document: one hop asked twice
                continue
            second = b.question[0].lower() + b.question[1:] if b.question[1:2].islower() else b.question
            meta = {"answer_starts": [a.answer_start, b.answer_start], "parts": [a.answer, b.answer], "hop": k}
            drafts.append(
                _Draft(
                    "multi_hop",
                    f"{a.question.rstrip('?.')}, and {second}",
                    f"{a.answer}; {b.answer}",
                    [ca, cb],
                    [doc.id, other.id],
                    [(a.statement, ca), (b.statement, cb)],
                    meta,
                )
            )
    if "unanswerable" in options.types:
        for _, q in found:
            j = _other(docs, i, rng)
            if j is None or not docs[j].chunks:
                continue
            foreign = rng.choice(docs[j].chunks)
            meta = {"withheld_answer": q.answer, "withheld_statement": q.statement, "asked_of": doc.id}
            drafts.append(
                _Draft(
                    "unanswerable", q.question, REFUSAL, [foreign], [docs[j].id, doc.id], [(q.statement, foreign)], meta
                )
            )
    return drafts


# --- the model generator -----------------------------------------------------------------------


class _Counts(Counter[str]):
    def update_one(self, name: str, n: int) -> None:
        self[name] += n


@dataclass
class _ModelGenerator:
    backend: ChatBackend
    cache: GenerationCache | None
    prompt: Any  # PromptVersion
    model: str
    options: SynthesizeOptions
    counts: _Counts = field(default_factory=_Counts)

    def _render(self, qtype: str, context: str) -> str:
        values = {"context": context, "question_type": qtype.replace("_", "-")}
        if "instructions" in self.prompt.variables:
            values["instructions"] = INSTRUCTIONS[qtype]
        return str(self.prompt.render(values))

    def plan(self, docs: list[_Doc], i: int) -> list[tuple[str, list[str], list[str]]]:
        """(type, contexts, source ids) of each request for document i."""
        doc, options = docs[i], self.options
        rng = random.Random(f"{options.seed}\x00{doc.id}")
        plans: list[tuple[str, list[str], list[str]]] = []
        for k in range(options.per_doc):
            chunk = doc.chunks[k % len(doc.chunks)]
            if "factual" in options.types:
                plans.append(("factual", [chunk], [doc.id]))
            if "multi_hop" in options.types and (j := _partner(docs, i, rng)) is not None:
                plans.append(("multi_hop", [chunk, docs[j].chunks[k % len(docs[j].chunks)]], [doc.id, docs[j].id]))
            if "unanswerable" in options.types:
                plans.append(("unanswerable", [chunk], [doc.id]))
        return plans

    def drafts(self, docs: list[_Doc], indices: Sequence[int], dropped: Callable[[str, str], None]) -> list[_Draft]:
        """Ask the model for every planned question of these documents (one batch), parse, count bad replies."""
        plans = [(i, k, plan) for i in indices for k, plan in enumerate(self.plan(docs, i))]
        requests = [
            {
                "model": self.model,
                "messages": [{"role": "user", "content": self._render(qtype, "\n\n---\n\n".join(contexts))}],
                "temperature": self.options.temperature,
                "max_tokens": self.options.max_tokens,
                "seed": self.options.seed + k,
            }
            for _, k, (qtype, contexts, _) in plans
        ]
        replies = generate_cached(self.backend, self.cache, requests, self.counts.update_one, "synthesize")
        out = []
        for (_, _, (qtype, contexts, ids)), reply in zip(plans, replies, strict=True):
            parsed = parse_generation(reply) if reply is not None else "request_failed"
            if isinstance(parsed, str):
                dropped(parsed, qtype)
                continue
            question, answer = parsed
            if qtype == "unanswerable":
                checks = [] if _is_refusal(answer) else [(answer, contexts[0])]
                out.append(_Draft(qtype, question, REFUSAL, contexts, ids, checks, {"model_answer": answer}))
            else:
                checks = [(answer, "\n\n".join(contexts))]
                meta = {"answer_in_context": any(answer.lower() in c.lower() for c in contexts)}
                out.append(_Draft(qtype, question, answer, contexts, ids, checks, meta))
        return out


def _is_refusal(answer: str) -> bool:
    return bool(re.search(r"\b(not|no|cannot|can't|doesn't|does not|unknown|unanswerable)\b", answer.lower()))


# --- filtering ------------------------------------------------------------------------------


@dataclass
class _Filter:
    options: SynthesizeOptions
    judge: Any
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    kept_shingles: dict[str, list[np.ndarray[Any, Any]]] = field(default_factory=dict)

    def drop(self, reason: str, qtype: str) -> None:
        self.dropped.setdefault(reason, {}).setdefault(qtype, 0)
        self.dropped[reason][qtype] += 1

    def _supported(self, statement: str, context: str) -> float:
        return float(self.judge.groundedness(statement, [context]).score)

    def keep(self, draft: _Draft) -> bool:
        """Whether the draft passes every filter (counting the first it fails)."""
        low, high = self.options.question_words
        words = len(draft.question.split())
        if words < low:
            return self._fail("question_too_short", draft)
        if words > high:
            return self._fail("question_too_long", draft)
        if draft.qtype != "unanswerable" and len(draft.answer.split()) > self.options.max_answer_words:
            return self._fail("answer_too_long", draft)
        shingles = word_shingles(draft.question, 3)
        earlier = self.kept_shingles.setdefault(draft.qtype, [])
        if any(jaccard(shingles, other) >= self.options.duplicate_jaccard for other in earlier):
            return self._fail("near_duplicate", draft)
        if self.judge is not None and draft.checks:
            scores = [self._supported(s, c) for s, c in draft.checks]
            draft.meta["support"] = [round(s, 4) for s in scores]
            threshold = self.options.support_threshold
            if draft.qtype == "unanswerable" and max(scores) >= threshold:
                return self._fail("answerable_from_context", draft)
            if draft.qtype != "unanswerable" and min(scores) < threshold:
                return self._fail("not_supported_by_context", draft)
        earlier.append(shingles)
        return True

    def _fail(self, reason: str, draft: _Draft) -> bool:
        self.drop(reason, draft.qtype)
        return False


# --- the run --------------------------------------------------------------------------------


def _check_options(options: SynthesizeOptions) -> None:
    unknown = [t for t in options.types if t not in QUESTION_TYPES]
    if unknown or not options.types:
        raise InputError(
            f"expected question types among {', '.join(QUESTION_TYPES)}; got {', '.join(unknown) or 'none'}"
        )
    if options.per_doc < 1 or (options.limit is not None and options.limit < 1):
        raise InputError(f"expected --per-doc and --limit of at least 1; got {options.per_doc} and {options.limit}")
    if options.generator not in ("extractive", "model"):
        raise InputError(f"expected --generator extractive or model; got {shown(options.generator)}")
    if options.generator == "extractive" and (options.model or options.base_url or options.prompt):
        raise InputError(
            "the extractive generator uses no model or prompt; got --model/--base-url/--prompt",
            hint="add --generator model to generate with a model",
        )
    if options.generator == "model":
        if bool(options.model) == bool(options.base_url):
            raise InputError(
                "expected either --model NAME@vN (a registered model, run in process) or --base-url URL with "
                "--model-name M (an OpenAI-compatible endpoint) for --generator model; got "
                + ("both" if options.model else "neither")
            )
        if options.base_url and not options.model_name:
            raise InputError("expected --model-name with --base-url (the model or deployment name to ask for)")
        if options.base_url and not options.base_url.startswith(("http://", "https://")):
            raise InputError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1; got {shown(options.base_url)}")


def _prompt(store: Store, ref: str | None) -> Any:
    from keel.registry import create_prompt, get_prompt

    if ref is None:
        variables = {
            "context": {"description": "the passage(s) to ask about", "required": True},
            "question_type": {"description": "factual, multi-hop or unanswerable", "required": True},
            "instructions": {"description": "what the question type asks for", "default": ""},
        }
        return create_prompt(store, DEFAULT_PROMPT, DEFAULT_TEMPLATE, variables=variables,
                             description="keel data synthesize: one question and answer as JSON")  # fmt: skip
    prompt = get_prompt(store, ref)
    missing = [v for v in REQUIRED_VARIABLES if v not in prompt.variables]
    if missing:
        raise InputError(
            f"prompt {prompt.ref} lacks the variables synthesis fills: {', '.join(missing)} "
            f"(it declares: {', '.join(prompt.variables) or 'none'})",
            hint="write the template with {{ context }} and {{ question_type }} (and optionally {{ instructions }})",
        )
    return prompt


def _model_generator(store: Store, options: SynthesizeOptions) -> _ModelGenerator:
    prompt = _prompt(store, options.prompt)
    cache_root = workspace_cache_root(store.settings.workspace)
    cache = GenerationCache(cache_root) if cache_root else None
    backend: ChatBackend
    if options.model:
        backend = LocalModelBackend(store.settings.workspace, options.model)
        name = backend.ref
    else:
        assert options.base_url and options.model_name
        backend = OpenAIBackend(options.base_url, api_key=options.api_key, concurrency=options.concurrency)
        name = options.model_name
    return _ModelGenerator(backend, cache, prompt, name, options, _Counts())


def _rows(drafts: list[_Draft], source: DatasetVersion, generator: str, model: str | None, prompt: str | None,
          seed: int) -> pa.Table:  # fmt: skip
    rows = []
    for d in drafts:
        ident = {"type": d.qtype, "question": d.question, "contexts": d.contexts, "sources": d.source_ids}
        rows.append(
            {
                "id": sha256_hex(canonical_json({**ident, "generator": generator}))[:24],
                "input": d.question,
                "expected": d.answer,
                "contexts": d.contexts,
                "labels": d.qtype,
                "answerable": d.qtype != "unanswerable",
                "source_ids": d.source_ids,
                "source_version": source.ref,
                "generator": generator,
                "model": model,
                "prompt": prompt,
                "seed": seed,
                "metadata": json.dumps(d.meta, sort_keys=True, ensure_ascii=False),
            }
        )
    schema = pa.schema(
        [("id", pa.string()), ("input", pa.string()), ("expected", pa.string()), ("contexts", pa.list_(pa.string())),
         ("labels", pa.string()), ("answerable", pa.bool_()), ("source_ids", pa.list_(pa.string())),
         ("source_version", pa.string()), ("generator", pa.string()), ("model", pa.string()),
         ("prompt", pa.string()), ("seed", pa.int64()), ("metadata", pa.string())]
    )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)


def _collect(
    docs: list[_Doc],
    options: SynthesizeOptions,
    model_gen: _ModelGenerator | None,
    keeper: _Filter,
    progress: Progress | None,
) -> tuple[list[_Draft], Counter[str]]:
    """Generate and filter document by document (16 per model batch) until done or `limit` rows are kept.

    Returns the kept drafts and how many were generated per type (unusable model replies included).
    """
    kept: list[_Draft] = []
    generated: Counter[str] = Counter()
    step = 16 if model_gen else 1
    for start in range(0, len(docs), step):
        indices = range(start, min(start + step, len(docs)))
        if model_gen is not None:
            drafts = model_gen.drafts(docs, indices, keeper.drop)
        else:
            drafts = [d for i in indices for d in _extractive_drafts(docs, i, options)]
        for draft in drafts:
            if options.limit is not None and len(kept) >= options.limit:
                break  # the rest of the batch is neither generated nor dropped as far as the report goes
            generated[draft.qtype] += 1
            if keeper.keep(draft):
                kept.append(draft)
        if progress:
            progress("Synthesizing", indices.stop, len(docs))
        if options.limit is not None and len(kept) >= options.limit:
            break
    for reason in ("malformed_json", "missing_fields", "request_failed"):
        for qtype, n in keeper.dropped.get(reason, {}).items():
            generated[qtype] += n
    return kept, generated


def synthesize(
    store: Store, source_ref: str, to: str, options: SynthesizeOptions | None = None, progress: Progress | None = None
) -> SynthesisReport:
    """Generate questions from `source_ref`'s documents, filter them, and commit them as the next version of `to`.

    Args:
        store: The workspace store.
        source_ref: The dataset version whose documents are asked about (`NAME@vN`, `NAME@tag`).
        to: The dataset to commit the questions to (derived from the source version in lineage).
        options: Types, counts, seed, generator, model and prompt, filter bounds.
        progress: Called with (label, documents done, documents) as work advances.

    Returns:
        The report: rows generated and kept per type, drops per filter and type, the committed version.

    Raises:
        InputError: Bad options, a prompt without the variables synthesis fills, an endpoint every request
            to which failed, or no question surviving the filters.
        NotFoundError: The source version or the prompt or model does not exist.

    Examples:
        >>> synthesize(store, "kb@v1", "kb-qa", SynthesizeOptions(seed=1)).kept  # doctest: +SKIP
        {'factual': 24, 'multi_hop': 11, 'unanswerable': 20}
    """
    options = options or SynthesizeOptions()
    _check_options(options)
    started = time.perf_counter()
    source = get_version(store, source_ref)
    docs = _documents(store, source, options)
    model_gen = _model_generator(store, options) if options.generator == "model" else None
    generator = EXTRACTIVE if model_gen is None else "model"
    prompt_ref = model_gen.prompt.ref if model_gen else None
    model_name = None
    if model_gen is not None:
        model_name = f"local:{model_gen.model}" if options.model else f"endpoint:{model_gen.model}@{options.base_url}"
    report = SynthesisReport(source.ref, generator, prompt_ref, model_name)
    judge = None
    if options.judge:
        from keel.evals import OfflineJudge

        judge = OfflineJudge()
    keeper = _Filter(options, judge)
    kept, generated = _collect(docs, options, model_gen, keeper, progress)
    if judge is not None:
        judge.close()
    report.generated = {t: generated[t] for t in options.types}
    report.kept = {t: sum(1 for d in kept if d.qtype == t) for t in options.types}
    report.dropped = keeper.dropped
    report.requests = dict(model_gen.counts) if model_gen else {}
    if not kept:
        raise InputError(
            f"no question survived the filters ({sum(generated.values())} generated from {len(docs)} documents of "
            f"{source.ref}; dropped: {_summary(keeper.dropped)})",
            hint="check the model's replies (malformed_json means it did not answer JSON), or loosen the bounds",
        )
    table = _rows(kept, source, generator, model_name, prompt_ref, options.seed)
    inputs = [model_gen.prompt.node_id] if model_gen else []
    if options.model and model_gen is not None:
        inputs.append(f"model-version:{model_gen.model}")
    report.version, report.created = commit_version(
        store,
        to,
        table,
        message=f"{len(kept)} synthetic questions from {source.ref} ({generator}, seed {options.seed})",
        parents=[*_previous(store, to), source.ref],
        producer={
            "command": "synthesize",
            "source": source.ref,
            "generator": generator,
            "model": model_name,
            "prompt": prompt_ref,
            "options": _options_json(options),
            "report": {"generated": report.generated, "kept": report.kept, "dropped": report.dropped},
        },  # fmt: skip
        inputs=inputs,
    )
    report.seconds = time.perf_counter() - started
    return report


def _previous(store: Store, name: str) -> list[str]:
    """The latest version of `name`, if any: the base a new version reuses (so equal rows commit nothing new)."""
    try:
        return [get_version(store, f"{name}@latest").ref]
    except NotFoundError:
        return []


def _options_json(options: SynthesizeOptions) -> dict[str, Any]:
    out = asdict(options)
    out.pop("api_key")
    return out


def _summary(dropped: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{reason} {sum(n.values())}" for reason, n in sorted(dropped.items())) or "none"
