"""The alias commands models and prompts share: alias, unalias, rollback, history, with one output format."""

# No `from __future__ import annotations`: the commands are defined in a function, and typer must evaluate
# their annotations (which use its locals) when they are defined.

from typing import Annotated

import typer
from rich.markup import escape

from keel.cli._context import console, get_store, print_json
from keel.cli._render import alias_history_table, alias_move
from keel.registry._aliases import AliasEvent, alias_history, roll_back_alias, set_alias
from keel.registry._refs import Subject

__all__ = ["add_alias_commands"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; kept in the alias history.")]
EvidenceOption = Annotated[
    str | None, typer.Option("--evidence", help="An id supporting the move, e.g. an eval result.")
]


def _report(verb: str, event: AliasEvent, json_output: bool) -> None:
    if json_output:
        print_json(event.to_json())
    else:
        console().print(f"{verb} {alias_move(event)}")


def add_alias_commands(app: typer.Typer, subject: Subject) -> None:
    """Register `alias`, `unalias`, `rollback` and `history` for `subject` on `app`.

    Args:
        app: The noun's command group (`keel model`, `keel prompt`).
        subject: What the aliases point into: `model` or `prompt`.
    """
    name_help = f"The {subject}'s name."

    @app.command("alias")
    def alias(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=name_help)],
        alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to move, e.g. production.")],
        version: Annotated[str, typer.Argument(help="vN or N, latest, or another alias of the same name.")],
        reason: ReasonOption,
        evidence: EvidenceOption = None,
        json_output: JsonOption = False,
    ) -> None:
        """Point ALIAS of NAME at VERSION, recording who, why and on what evidence."""
        event = set_alias(get_store(ctx), subject, name, alias_name, version, reason=reason, evidence=evidence)
        _report("Moved", event, json_output)

    @app.command("unalias")
    def unalias(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=name_help)],
        alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to remove.")],
        reason: ReasonOption,
        json_output: JsonOption = False,
    ) -> None:
        """Remove ALIAS of NAME (recorded in the history like any move)."""
        event = set_alias(get_store(ctx), subject, name, alias_name, None, reason=reason)
        _report("Removed", event, json_output)

    @app.command("rollback")
    def rollback(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=name_help)],
        alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to move back, e.g. production.")],
        reason: ReasonOption,
        evidence: EvidenceOption = None,
        json_output: JsonOption = False,
    ) -> None:
        """Undo the last move of ALIAS: point it back at the version it had before."""
        event = roll_back_alias(get_store(ctx), subject, name, alias_name, reason=reason, evidence=evidence)
        _report("Rolled back", event, json_output)

    @app.command("history")
    def history(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=name_help)],
        alias_name: Annotated[str | None, typer.Option("--alias", help="Only this alias's moves.")] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Show every alias move of NAME, oldest first: the rollback trail."""
        moves = alias_history(get_store(ctx), subject, name, alias_name)
        if json_output:
            print_json([event.to_json() for event in moves])
        else:
            empty = f"No alias of {subject} {escape(name)} has been set yet."
            console().print(alias_history_table(moves) if moves else empty)
