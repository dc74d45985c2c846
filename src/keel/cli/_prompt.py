"""`keel prompt …`: create, inspect, render and alias versioned prompt templates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._alias import add_alias_commands
from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.core.ids import canonical_json
from keel.registry._prompts import (
    create_prompt,
    get_prompt,
    list_prompts,
    load_prompt_file,
    render_prompt,
)

__all__ = ["prompt_app"]

prompt_app = typer.Typer(help="Versioned prompt templates: create, render, alias and roll back.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; kept in the alias history.")]
EvidenceOption = Annotated[
    str | None, typer.Option("--evidence", help="An id supporting the move, e.g. an eval result.")
]


@prompt_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The prompt name, e.g. support-answer.")],
    file: Annotated[
        Path | None, typer.Argument(help="A YAML file with template, variables, examples and description.")
    ] = None,
    template: Annotated[str | None, typer.Option("--template", help="The template text, instead of FILE.")] = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="With --template: declare a required variable (repeatable).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="With --template: what the prompt is for.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Register a new version of prompt NAME from FILE (or --template); unchanged content is a no-op."""
    if (file is None) == (template is None):
        raise InputError("expected either a prompt FILE or --template TEXT; got " + ("both" if file else "neither"))
    if file is not None and (var or description is not None):
        raise InputError("expected --var and --description only with --template; a prompt FILE declares them itself")
    content: dict[str, Any] = (
        load_prompt_file(file)
        if file is not None
        else {"template": template, "variables": var or None, "description": description}
    )
    version = create_prompt(get_store(ctx), name, **content)
    if json_output:
        print_json({**version.to_json(), "created": version.created})
    elif version.created:
        console().print(f"Created prompt {version.ref}")
    else:
        console().print(f"{version.ref} is unchanged (same template, variables and examples as the latest version)")


@prompt_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN, NAME@latest or NAME@<alias>.")],
    json_output: JsonOption = False,
) -> None:
    """Show a prompt version: its template, variables, examples and aliases."""
    prompt = get_prompt(get_store(ctx), ref)
    if json_output:
        print_json(prompt.to_json())
        return
    out = console()
    out.print(f"[bold]{prompt.ref}[/bold]  digest {prompt.digest[:12]}")
    out.print(f"created {format_time(prompt.created_at)[:19]} by {escape(prompt.created_by)}")
    if prompt.description:
        out.print(prompt.description, markup=False)
    out.print(f"aliases: {escape(', '.join(prompt.aliases)) or '[dim]none[/dim]'}")
    out.print(f"examples: {len(prompt.examples)}")
    table = Table("variable", "required", "default", "description", title="variables", title_justify="left")
    for variable, spec in prompt.variables.items():
        default = escape(canonical_json(spec["default"])) if "default" in spec else ""
        table.add_row(variable, "yes" if spec["required"] else "no", default, escape(spec["description"] or ""))
    out.print(table if prompt.variables else "variables: [dim]none[/dim]")
    out.print("[bold]template[/bold]")
    out.print(prompt.template, markup=False)


def _values(pairs: list[str], vars_file: Path | None) -> dict[str, Any]:
    """Variable values from a JSON file, then `--var NAME=VALUE` pairs (which win)."""
    values: dict[str, Any] = {}
    if vars_file is not None:
        from keel.core.settings import read_config_file

        holds = 'a JSON object of variable values, e.g. {"question": "..."}'
        values.update(read_config_file(vars_file, "vars file", holds=holds, syntax="json", error=InputError))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"expected --var NAME=VALUE; got {shown(pair)}")
        values[key] = value
    return values


@prompt_app.command("render")
def render(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN, NAME@latest or NAME@<alias>.")],
    var: Annotated[list[str] | None, typer.Option("--var", help="A variable value, NAME=VALUE (repeatable).")] = None,
    vars_file: Annotated[
        Path | None, typer.Option("--vars-file", help="A JSON object of variable values; --var overrides it.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Render a prompt version with the given variables and print the text."""
    rendered = render_prompt(get_store(ctx), ref, _values(var or [], vars_file))
    if json_output:
        print_json(rendered.to_json())
    else:
        typer.echo(rendered.text)


add_alias_commands(prompt_app, "prompt")


@prompt_app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List every prompt with its latest version and aliases."""
    found = list_prompts(get_store(ctx))
    if json_output:
        print_json([summary.to_json() for summary in found])
        return
    if not found:
        console().print("No prompts yet; create one with `keel prompt create NAME FILE.yaml`.", markup=False)
        return
    table = Table("name", "latest", "aliases", "updated (UTC)", "description")
    for summary in found:
        pointers = ", ".join(f"{alias}→v{version}" for alias, version in summary.aliases.items())
        table.add_row(
            summary.name,
            f"v{summary.latest}",
            pointers,
            format_time(summary.updated_at)[:19],
            escape(summary.description or ""),
        )
    console().print(table)
