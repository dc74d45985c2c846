"""Model cards assembled from what Keel recorded, not from what someone remembered to write.

The base model, training data versions, the training run's parameters, metrics and environment,
and evaluation results all come from the registry and the lineage graph; intended use and
limitations come from the version's info, and say so plainly when nobody filled them in.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from keel.core.clock import format_time
from keel.core.errors import NotFoundError
from keel.registry._models import get_model
from keel.registry._runs import get_run
from keel.store import Store, walk

__all__ = ["model_card", "render_card_markdown"]

NOT_STATED = "Not stated. Record it with `keel model register … --intended-use/--limitations`."
_ENV_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "keel-llmops")


def model_card(store: Store, ref: str) -> dict[str, Any]:
    """The card of a model version as JSON-ready data.

    Args:
        store: The workspace store.
        ref: `NAME`, `NAME@vN` or `NAME@<alias>`.

    Returns:
        Identity, files, base model, training run, training data, evaluations, intended use
        and limitations, and the lineage it was built from.
    """
    model = get_model(store, ref, with_files=False)
    with store.db.read() as conn:
        try:
            upstream = walk(conn, model.node, "upstream", depth=10)
            downstream = walk(conn, model.node, "downstream", depth=1)
        except NotFoundError:  # a version registered from files alone has no lineage edges yet
            upstream, downstream = [], []
        run = get_run(conn, model.run_id) if model.run_id else None
    by_kind: dict[str, list[str]] = defaultdict(list)
    for hit in upstream:
        by_kind[hit.node.partition(":")[0]].append(hit.node)
    training: dict[str, Any] | None = None
    if run is not None:
        packages = run.env.get("packages", {})
        training = {
            "run": run.id,
            "kind": run.kind,
            "status": run.status,
            "params": run.params,
            "metrics": run.metrics,
            "started_at": format_time(run.started_at),
            "ended_at": format_time(run.ended_at) if run.ended_at else None,
            "environment": {
                "git": run.env.get("git"),
                "python": run.env.get("python"),
                "platform": run.env.get("platform"),
                "accelerators": run.env.get("accelerators"),
                "seed": run.env.get("seed"),
                "packages": {name: packages[name] for name in _ENV_PACKAGES if name in packages},
            },
        }
    return {
        "model": model.ref,
        "format": model.format,
        "size_bytes": model.size,
        "files": model.file_count,
        "created_by": model.created_by,
        "created_at": format_time(model.created_at),
        "aliases": model.aliases,
        "description": model.info.get("description"),
        "base_model": model.base_model,
        "training": training,
        "training_data": by_kind.get("dataset-version", []),
        "evaluations": [h.node for h in downstream if h.node.startswith("eval-result:")],
        "intended_use": model.info.get("intended_use") or NOT_STATED,
        "limitations": model.info.get("limitations") or NOT_STATED,
        "lineage": dict(sorted(by_kind.items())),
        "erased_data": model.erased_data,
        "optimization": model.info.get("optimization"),
    }


def _bullets(items: list[str], empty: str) -> list[str]:
    return [f"- `{item}`" for item in items] or [f"- {empty}"]


def render_card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown, for a README or a model hub page."""
    lines = [f"# Model card: {card['model']}", ""]
    if card["description"]:
        lines += [card["description"], ""]
    lines += [
        f"- Format: {card['format']}, {card['files']} file(s), {card['size_bytes']:,} bytes",
        f"- Registered by {card['created_by']} at {card['created_at']}",
        f"- Aliases: {', '.join(card['aliases']) or 'none'}",
        f"- Base model: {card['base_model'] or 'not recorded'}",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Limitations",
        "",
        card["limitations"],
        "",
        "## Training data",
        "",
        *_bullets(card["training_data"], "No dataset versions are linked in lineage."),
        *[
            f"- **Trained on erased data**: erasure `{m['erasure']}` removed records of its training data "
            "after it was trained; retrain on the replacement versions."
            for m in card.get("erased_data", [])
        ],
        "",
        "## Training",
        "",
    ]
    training = card["training"]
    if training is None:
        lines.append("- No training run is linked to this version.")
    else:
        lines.append(f"- Run `{training['run']}` ({training['kind']}, {training['status']})")
        lines += [f"- `{key}` = `{value}`" for key, value in sorted(training["params"].items())]
        lines += [f"- final `{key}`: {value:.6g}" for key, value in sorted(training["metrics"].items())]
        env = training["environment"]
        git = env.get("git") or {}
        commit = (
            f"{git.get('commit', '')[:12]}{' (dirty)' if git.get('dirty') else ''}" if git else "not a git checkout"
        )
        lines.append(f"- Code: {commit}; Python {env.get('python')}; {env.get('platform')}")
        lines += [f"- {name} {version}" for name, version in env.get("packages", {}).items()]
    lines += ["", "## Evaluation", "", *_bullets(card["evaluations"], "No evaluation results are linked yet."), ""]
    lines += _optimization_lines(card.get("optimization"))
    return "\n".join(lines)


def _optimization_lines(found: dict[str, Any] | None) -> list[str]:
    """Quantisation, export or pruning against the parent, as measured when the version was made."""
    if not found:
        return []
    lines = ["## Optimisation", "", f"- {found.get('method')} of `{found.get('parent')}`"]
    if found.get("quantization"):
        lines.append(f"- Quantisation: {found['quantization']}")
    before, after = found.get("parent_metrics") or {}, found.get("metrics") or {}
    if "perplexity" in before and "perplexity" in after:
        lines.append(
            f"- Perplexity on held-out text: {before['perplexity']:.4g} (parent) → {after['perplexity']:.4g} "
            f"({found.get('perplexity_change', 0):+.2%})"
        )
    if "size_bytes" in before and "size_bytes" in after:
        lines.append(f"- Size: {int(before['size_bytes']):,} → {int(after['size_bytes']):,} bytes")
    return [*lines, ""]
