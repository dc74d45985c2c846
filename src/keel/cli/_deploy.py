"""`keel deploy …`: create deployments, canary, promote, roll back, and read their history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
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
    Literal["openai", "transformers", "sentence-transformers"] | None,
    typer.Option(help="Where the model runs: an upstream OpenAI-compatible server, or in process."),
]
Upstream = Annotated[str | None, typer.Option(help="Upstream base URL for the openai backend, e.g. http://h:8000/v1.")]
UpstreamModel = Annotated[str | None, typer.Option(help="Model name sent upstream (default: the registry name).")]
PriceIn = Annotated[float | None, typer.Option(help="Cost per 1,000 input tokens.")]
PriceOut = Annotated[float | None, typer.Option(help="Cost per 1,000 output tokens.")]


def _routes_text(deployment: Deployment) -> str:
    return ", ".join(f"{r.model} {r.weight}% ({r.backend})" for r in deployment.routes)


def _show(deployment: Deployment, json_output: bool, verb: str) -> None:
    if json_output:
        print_json(deployment.to_json())
    else:
        console().print(escape(f"{verb} {deployment.name}: {_routes_text(deployment)}"))


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
    json_output: JsonOption = False,
) -> None:
    """Create deployment NAME sending every request to one model version."""
    store = get_store(ctx)
    route: dict[str, Any] = {"backend": backend, "upstream": upstream, "upstream_model": upstream_model,
                             "price_in": price_in, "price_out": price_out, "max_batch": max_batch,
                             "max_wait_ms": max_wait_ms}  # fmt: skip
    fallback = None
    if fallback_model is not None:
        from keel.registry import get_model

        fallback = Route(model=get_model(store, fallback_model, with_files=False).ref, upstream=fallback_upstream)
    settings = DeploymentSettings(
        injection=injection, pii=pii, max_tokens=max_tokens, cache_ttl_s=cache_ttl, fallback=fallback
    )
    _show(create_deployment(store, name, model, route=route, settings=settings), json_output, "Created")


@deploy_app.command("canary")
def canary(
    ctx: typer.Context,
    name: Name,
    model: Model,
    weight: Annotated[int, typer.Option(help="Percent of requests the canary gets (1-99).")] = 10,
    upstream: Upstream = None,
    upstream_model: UpstreamModel = None,
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
    """Send WEIGHT% of NAME's requests to another model version; with --guard, a rollout `keel monitor watch` steps."""
    route = {k: v for k, v in {"upstream": upstream, "upstream_model": upstream_model}.items() if v is not None}
    store = get_store(ctx)
    if not guard:
        _show(canary_deployment(store, name, model, weight=weight, route=route), json_output, "Canary on")
        return
    from keel.core.errors import InputError
    from keel.monitor import parse_duration, start_rollout

    try:
        weights = [int(s) for s in steps.split(",")] if steps else [weight, 100]
    except ValueError:
        raise InputError(f"expected --steps as comma-separated percentages such as 10,50,100; got {steps!r}") from None
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
    json_output: JsonOption = False,
) -> None:
    """Change NAME's guardrail and cache policies; unchanged options keep their values."""
    store = get_store(ctx)
    current = get_deployment(store, name).settings
    changes = {"injection": injection, "pii": pii, "max_tokens": max_tokens, "cache_ttl_s": cache_ttl}
    settings = current.model_copy(update={k: v for k, v in changes.items() if v is not None})
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
    table = Table("deployment", "routes", "updated (UTC)")
    for d in found:
        table.add_row(escape(d.name), escape(_routes_text(d)), format_time(d.updated_at)[:19])
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
        routes = ", ".join(f"{r['model']} {r.get('weight', 100)}%" for r in e.to_routes)
        why = str(e.evidence.get("reason") or e.evidence.get("decision", "")) if e.evidence else ""
        table.add_row(str(e.id), format_time(e.at)[:19], e.action, escape(routes), escape(e.actor), escape(why))
    console().print(table)
