"""`keel model …`: register, list, show, alias, roll back, pull and describe model versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.cli._render import alias_history_table, alias_move, human_bytes
from keel.core.clock import format_time
from keel.registry import (
    AliasEvent,
    ModelInfo,
    alias_model,
    get_model,
    list_models,
    model_card,
    model_history,
    pull_model,
    register_model,
    render_card_markdown,
    rollback_model,
)
from keel.registry._refs import parse_version

__all__ = ["model_app"]

model_app = typer.Typer(help="The model registry: versions, aliases and their history, cards.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Reason = Annotated[str, typer.Option(help="Why; kept in the alias history.")]


@model_app.command("register")
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    path: Annotated[Path | None, typer.Argument(help="A model directory or file (omit with --run).")] = None,
    run: Annotated[str | None, typer.Option(help="The run that produced it; its artifacts if PATH is omitted.")] = None,
    base_model: Annotated[str | None, typer.Option(help="What it was tuned from: a ref, hub id or path.")] = None,
    description: Annotated[str | None, typer.Option(help="One paragraph for the card.")] = None,
    intended_use: Annotated[str | None, typer.Option(help="What it is for, for the card.")] = None,
    limitations: Annotated[str | None, typer.Option(help="Known limitations, for the card.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Store a model's files as blobs and register them as the next version of NAME."""
    store = get_store(ctx)
    info = ModelInfo(description=description, intended_use=intended_use, limitations=limitations)
    with console().status(f"Storing files of {name}…"):
        model, created = register_model(store, name, path, run_id=run, base_model=base_model, info=info)
    if json_output:
        print_json({**model.to_json(), "created": created})
    elif created:
        console().print(
            f"Registered {model.ref}: {model.format}, {model.file_count} file(s), {human_bytes(model.size)}"
        )
    else:
        console().print(f"{model.ref} already holds these files; nothing new registered.")


@model_app.command("list")
def list_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List models with their latest version and aliases."""
    found = list_models(get_store(ctx))
    if json_output:
        print_json(found)
        return
    table = Table("model", "latest", "format", "aliases", "updated (UTC)")
    for row in found:
        aliases = ", ".join(f"{a}→{v}" for a, v in row["aliases"].items())
        table.add_row(row["name"], f"v{row['latest']}", row["format"], aliases, row["updated_at"][:19])
    console().print(table if found else "No models yet: `keel model register NAME PATH`.")


@model_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@alias.")],
    json_output: JsonOption = False,
) -> None:
    """Show a model version: files, run, base model and aliases."""
    model = get_model(get_store(ctx), ref)
    if json_output:
        print_json(model.to_json())
        return
    out = console()
    aliases = ", ".join(model.aliases) or "—"
    out.print(f"[bold]{model.ref}[/bold]  {model.format}  {human_bytes(model.size)}  aliases: {aliases}")
    out.print(f"  registered by {model.created_by} at {format_time(model.created_at)}")
    out.print(f"  run {model.run_id or '—'}; base model {model.base_model or '—'}")
    for f in model.files:
        out.print(f"  {f.path}  {human_bytes(f.size)}  [dim]{f.digest[:12]}[/dim]")


def _print_event(event: AliasEvent) -> None:
    console().print(alias_move(event))


@model_app.command("alias")
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production or staging.")],
    version: Annotated[str, typer.Argument(help="vN or N; the version the alias should point at.")],
    reason: Reason,
    evidence: Annotated[str | None, typer.Option(help="An id supporting the move, e.g. an eval result.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Point ALIAS of NAME at VERSION, recording who, why and on what evidence."""
    event = alias_model(get_store(ctx), name, alias_name, parse_version(version), reason=reason, evidence=evidence)
    print_json(event.to_json()) if json_output else _print_event(event)


@model_app.command("unalias")
def unalias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to remove.")],
    reason: Reason,
    json_output: JsonOption = False,
) -> None:
    """Remove ALIAS of NAME (recorded in the history like any move)."""
    event = alias_model(get_store(ctx), name, alias_name, None, reason=reason)
    print_json(event.to_json()) if json_output else _print_event(event)


@model_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to move back, e.g. production.")],
    reason: Reason,
    json_output: JsonOption = False,
) -> None:
    """Undo the last move of ALIAS: point it back at the version it had before."""
    event = rollback_model(get_store(ctx), name, alias_name, reason=reason)
    print_json(event.to_json()) if json_output else _print_event(event)


@model_app.command("history")
def history_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias_name: Annotated[str | None, typer.Option("--alias", help="Only this alias.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Show every alias move of NAME, oldest first: the rollback trail."""
    moves = model_history(get_store(ctx), name, alias_name)
    if json_output:
        print_json([event.to_json() for event in moves])
        return
    console().print(alias_history_table(moves) if moves else f"No alias of {name} has been set yet.")


@model_app.command("pull")
def pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@alias.")],
    directory: Annotated[Path, typer.Argument(help="Where to restore the files.")],
    force: Annotated[bool, typer.Option(help="Overwrite files in a non-empty directory.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Restore a model version's files into DIRECTORY, each verified against its digest."""
    with console().status(f"Restoring {ref}…"):
        model = pull_model(get_store(ctx), ref, directory, force=force)
    if json_output:
        print_json({"ref": model.ref, "directory": str(directory), "files": model.file_count})
    else:
        console().print(f"Restored {model.ref} into {directory}: {model.file_count} file(s) verified.")


@model_app.command("card")
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@alias.")],
    output_format: Annotated[Literal["md", "json"], typer.Option("--format", help="md or json.")] = "md",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the model card, built from the registry and lineage."""
    data = model_card(get_store(ctx), ref)
    if output_format == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = render_card_markdown(data)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console().print(f"Wrote the card of {data['model']} to {output}")
