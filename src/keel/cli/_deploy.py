"""`keel deploy …`: create deployments, canary, promote, roll back, and read their history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.serve import (
    Deployment,
    DeploymentSettings,
    Route,
    canary_deployment,
    configure_deployment,
    create_deployment,
    deployment_history,
    get_deployment,
    list_deployments,
    promote_deployment,
    rollback_deployment,
)

__all__ = ["deploy_app"]

deploy_app = typer.Typer(
    help="Deployments: routes to model versions, canaries, blue/green, rollback.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Name = Annotated[str, typer.Argument(help="The deployment (what clients pass as `model`).")]
Model = Annotated[str, typer.Option("--model", help="A registry reference: NAME, NAME@vN or NAME@alias.")]
Backend = Annotated[
    Literal["openai", "transformers", "sentence-transformers", "llama.cpp"] | None,
    typer.Option(help="Where the model runs: an upstream OpenAI-compatible server, or in process."),
]
Upstream = Annotated[str | None, typer.Option(help="Upstream base URL for the openai backend, e.g. http://h:8000/v1.")]
UpstreamModel = Annotated[str | None, typer.Option(help="Model name sent upstream (default: the registry name).")]
PriceIn = Annotated[float | None, typer.Option(help="Cost per 1,000 input tokens.")]
PriceOut = Annotated[float | None, typer.Option(help="Cost per 1,000 output tokens.")]
Prompt = Annotated[
    str | None, typer.Option(help="A prompt version (NAME@vN or NAME@alias, pinned now) rendered before each chat.")
]
Index = Annotated[str | None, typer.Option(help="An index version (NAME@vN, pinned now) searched for each chat.")]
TopK = Annotated[int | None, typer.Option("--k", help="Most retrieved chunks given to the prompt (default 4).")]
MinScore = Annotated[float | None, typer.Option(help="Leave out chunks scoring below this.")]
Mode = Annotated[
    Literal["hybrid", "vector", "keyword"] | None, typer.Option(help="How the index is searched (default hybrid).")
]
EfSearch = Annotated[
    int | None, typer.Option(help="HNSW search breadth of this route's queries (default: the index version's own).")
]
ContextTokens = Annotated[int | None, typer.Option(help="Most estimated tokens of retrieved context (default 2000).")]
QueryFrom = Annotated[
    Literal["last-user", "first-user", "all-user"] | None,
    typer.Option("--query", help="Which message is the query (default: the last user message)."),
]


def _routes_text(deployment: Deployment) -> str:
    return ", ".join(f"{r.label()} {r.weight}% ({r.backend})" for r in deployment.routes)


def _retrieval(
    k: int | None,
    min_score: float | None,
    mode: str | None,
    context: int | None,
    query: str | None,
    ef_search: int | None = None,
) -> dict[str, Any] | None:
    given = {"k": k, "min_score": min_score, "mode": mode, "max_context_tokens": context, "query": query,
             "ef_search": ef_search}  # fmt: skip
    values = {key: v for key, v in given.items() if v is not None}
    return values or None


def _show(deployment: Deployment, json_output: bool, verb: str) -> None:
    if json_output:
        print_json(deployment.to_json())
    else:
        console().print(escape(f"{verb} {deployment.name}: {_routes_text(deployment)}"))


Retain = Annotated[
    str | None,
    typer.Option(help="Keep traces (and feedback) this long, e.g. 30d; `keel govern enforce` deletes older."),
]


AllowUnsafe = Annotated[
    bool, typer.Option("--allow-unsafe", help="Deploy a version registered over dangerous scan findings (audited).")
]


@deploy_app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    model: Model,
    backend: Backend = None,
    upstream: Upstream = None,
    upstream_model: UpstreamModel = None,
    price_in: PriceIn = None,
    price_out: PriceOut = None,
    max_batch: Annotated[int | None, typer.Option(help="transformers: most requests per batch.")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="transformers: longest wait to fill a batch.")] = None,
    injection: Annotated[Literal["off", "flag", "block"], typer.Option(help="Prompt-injection policy.")] = "flag",
    pii: Annotated[Literal["off", "redact"], typer.Option(help="Redact personal data in prompts and answers.")] = "off",
    max_tokens: Annotated[int | None, typer.Option(help="Clamp requests to at most this many output tokens.")] = None,
    cache_ttl: Annotated[float, typer.Option(help="Seconds to reuse temperature-0 answers (0: off).")] = 0.0,
    fallback_model: Annotated[str | None, typer.Option(help="Registry ref answering when the route fails.")] = None,
    fallback_upstream: Annotated[str | None, typer.Option(help="Upstream URL of the fallback.")] = None,
    prompt: Prompt = None,
    index: Index = None,
    k: TopK = None,
    min_score: MinScore = None,
    mode: Mode = None,
    max_context_tokens: ContextTokens = None,
    query: QueryFrom = None,
    ef_search: EfSearch = None,
    retain: Retain = None,
    allow_unsafe: AllowUnsafe = False,
    json_output: JsonOption = False,
) -> None:
    """Create deployment NAME sending every request to one model version (with a prompt and an index: a RAG app)."""
    store = get_store(ctx)
    route: dict[str, Any] = {"backend": backend, "upstream": upstream, "upstream_model": upstream_model,
                             "price_in": price_in, "price_out": price_out, "max_batch": max_batch,
                             "max_wait_ms": max_wait_ms, "prompt": prompt, "index": index,
                             "retrieval": _retrieval(k, min_score, mode, max_context_tokens, query,
                                                     ef_search)}  # fmt: skip
    fallback = None
    if fallback_model is not None:
        from keel.registry import get_model

        fallback = Route(model=get_model(store, fallback_model, with_files=False).ref, upstream=fallback_upstream)
    settings = DeploymentSettings(
        injection=injection, pii=pii, max_tokens=max_tokens, cache_ttl_s=cache_ttl, fallback=fallback, retain=retain
    )
    created = create_deployment(store, name, model, route=route, settings=settings, allow_unsafe=allow_unsafe)
    _show(created, json_output, "Created")


@deploy_app.command("canary")
def canary(
    ctx: typer.Context,
    name: Name,
    model: Annotated[
        str | None, typer.Option("--model", help="A registry reference (default: the primary route's model).")
    ] = None,
    weight: Annotated[int, typer.Option(help="Percent of requests the canary gets (1-99).")] = 10,
    upstream: Upstream = None,
    upstream_model: UpstreamModel = None,
    prompt: Prompt = None,
    index: Index = None,
    k: TopK = None,
    min_score: MinScore = None,
    mode: Mode = None,
    max_context_tokens: ContextTokens = None,
    query: QueryFrom = None,
    ef_search: EfSearch = None,
    allow_unsafe: AllowUnsafe = False,
    guard: Annotated[
        list[str] | None,
        typer.Option(help="Guarded rollout: a condition the canary must keep, e.g. 'error_rate<1%' (repeatable)."),
    ] = None,
    steps: Annotated[
        str | None, typer.Option(help="Guarded rollout: canary weights in turn, ending at 100 (default: WEIGHT,100).")
    ] = None,
    interval: Annotated[str, typer.Option(help="Guarded rollout: length of each analysis window.")] = "10m",
    min_requests: Annotated[int, typer.Option(help="Guarded rollout: canary requests a window needs.")] = 50,
    alpha: Annotated[float, typer.Option(help="Guarded rollout: significance of the canary-vs-stable tests.")] = 0.05,
    json_output: JsonOption = False,
) -> None:
    """Send WEIGHT% of NAME's requests to another model, prompt or index version; with --guard, a rollout."""
    given = {"upstream": upstream, "upstream_model": upstream_model, "prompt": prompt, "index": index,
             "retrieval": _retrieval(k, min_score, mode, max_context_tokens, query, ef_search)}  # fmt: skip
    route = {key: v for key, v in given.items() if v is not None}
    if model is None and not route.keys() & {"prompt", "index", "retrieval"}:
        raise InputError(
            f"expected what the canary of {name!r} changes: --model, --prompt, --index or a retrieval setting; got none"
        )
    store = get_store(ctx)
    if not guard:
        _show(
            canary_deployment(store, name, model, weight=weight, route=route, allow_unsafe=allow_unsafe),
            json_output,
            "Canary on",
        )
        return
    from keel.monitor import parse_duration, start_rollout

    try:
        weights = [int(s) for s in steps.split(",")] if steps else [weight, 100]
    except ValueError:
        raise InputError(
            f"expected --steps as comma-separated percentages such as 10,50,100; got {shown(steps)}"
        ) from None
    if model is None:
        raise InputError("a guarded rollout (--guard) needs --model: it steps a model canary; got none")
    rollout = start_rollout(store, name, model, guards=guard, steps=weights, interval=parse_duration(interval),
                            route=route, alpha=alpha, min_requests=min_requests)  # fmt: skip
    if json_output:
        print_json(rollout.to_json())
        return
    console().print(escape(f"Guarded rollout of {rollout.canary} on {name}: {rollout.weight}% now, steps "
                           f"{','.join(map(str, rollout.steps))} every {interval}, guards {', '.join(rollout.guards)}; "
                           "`keel monitor watch` runs it."))  # fmt: skip


@deploy_app.command("promote")
def promote(ctx: typer.Context, name: Name, json_output: JsonOption = False) -> None:
    """Switch every request of NAME to its canary (blue/green)."""
    _show(promote_deployment(get_store(ctx), name), json_output, "Promoted")


@deploy_app.command("rollback")
def rollback(ctx: typer.Context, name: Name, json_output: JsonOption = False) -> None:
    """Put back NAME's routes from before its last change; gateways switch within a second."""
    _show(rollback_deployment(get_store(ctx), name), json_output, "Rolled back")


@deploy_app.command("configure")
def configure(
    ctx: typer.Context,
    name: Name,
    injection: Annotated[Literal["off", "flag", "block"] | None, typer.Option(help="Prompt-injection policy.")] = None,
    pii: Annotated[Literal["off", "redact"] | None, typer.Option(help="Redact personal data.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Clamp output tokens to this.")] = None,
    cache_ttl: Annotated[float | None, typer.Option(help="Seconds to reuse temperature-0 answers.")] = None,
    semantic_cache: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Also reuse answers to questions this cosine-similar (0.92; 0: off)."),
    ] = None,
    record_content: Annotated[
        bool | None, typer.Option(help="Keep what requests asked and were answered (for feedback export).")
    ] = None,
    online_eval: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Fraction of answers scored in the background by judges (0-1)."),
    ] = None,
    retain: Retain = None,
    json_output: JsonOption = False,
) -> None:
    """Change NAME's guardrail, cache, content, online-evaluation and retention policies; the rest stay."""
    store = get_store(ctx)
    current = get_deployment(store, name).settings
    changes = {"injection": injection, "pii": pii, "max_tokens": max_tokens, "cache_ttl_s": cache_ttl,
               "record_content": record_content, "online_eval": online_eval, "retain": retain}  # fmt: skip
    settings = current.model_copy(update={k: v for k, v in changes.items() if v is not None})
    if semantic_cache is not None:
        settings = settings.model_copy(update={"semantic_cache": semantic_cache or None})
    if settings.semantic_cache and not settings.cache_ttl_s:
        raise InputError("expected --cache-ttl above 0 with --semantic-cache (its answers expire with it); got 0")
    _show(
        configure_deployment(store, name, DeploymentSettings.model_validate(settings.model_dump())),
        json_output,
        "Configured",
    )


@deploy_app.command("list")
def list_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List deployments and their routes."""
    found = list_deployments(get_store(ctx))
    if json_output:
        print_json([d.to_json() for d in found])
        return
    table = Table("deployment", "routes", "updated (UTC)", "erased data")
    for d in found:
        erased = "serves a model trained on erased data" if d.erased_data else ""
        table.add_row(escape(d.name), escape(_routes_text(d)), format_time(d.updated_at)[:19], erased)
    console().print(table if found else "No deployments yet: `keel deploy create NAME --model REF`.")


@deploy_app.command("show")
def show(ctx: typer.Context, name: Name, json_output: JsonOption = False) -> None:
    """Show a deployment's routes and policies."""
    deployment = get_deployment(get_store(ctx), name)
    if json_output:
        print_json(deployment.to_json())
        return
    console().print(escape(f"{deployment.name}: {_routes_text(deployment)}"))
    console().print(escape(f"settings: {deployment.settings.model_dump(exclude_defaults=True)}"))


@deploy_app.command("history")
def history(ctx: typer.Context, name: Name, json_output: JsonOption = False) -> None:
    """Every route change of NAME, oldest first."""
    found = deployment_history(get_store(ctx), name)
    if json_output:
        print_json([e.to_json() for e in found])
        return
    table = Table("#", "time (UTC)", "action", "routes after", "actor", "why")
    for e in found:
        routes = ", ".join(
            f"{' + '.join(r[k] for k in ('model', 'prompt', 'index') if r.get(k))} {r.get('weight', 100)}%"
            for r in e.to_routes
        )
        why = str(e.evidence.get("reason") or e.evidence.get("decision", "")) if e.evidence else ""
        table.add_row(str(e.id), format_time(e.at)[:19], e.action, escape(routes), escape(e.actor), escape(why))
    console().print(table)
