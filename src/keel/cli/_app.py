"""The root `keel` command: global options, and the nouns each sub-module adds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli._audit import audit_app
from keel.cli._context import KeelGroup, State, console
from keel.cli._curate import curate_app
from keel.cli._data import data_app
from keel.cli._demo import demo
from keel.cli._deploy import deploy_app
from keel.cli._eval import eval_app
from keel.cli._index import index_app
from keel.cli._keys import keys_app
from keel.cli._lineage import lineage_app
from keel.cli._maintenance import doctor_command, gc_command
from keel.cli._model import model_app
from keel.cli._monitor import monitor_app
from keel.cli._prompt import prompt_app
from keel.cli._runs import runs_app
from keel.cli._serve import serve
from keel.cli._traces import traces_app
from keel.cli._train import train_app
from keel.cli._workspace import db_app, init, status
from keel.store import keel_version

__all__ = ["app", "main"]

app = typer.Typer(
    cls=KeelGroup,
    help="Keel: curate, version, train, evaluate, serve, monitor and govern LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a bug's traceback should be the plain, complete one
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console().print(f"keel {keel_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="The workspace folder (default: KEEL_WORKSPACE, else the nearest keel.yaml above).",
            file_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print Keel's version and exit.")
    ] = False,
) -> None:
    """Keel: curate, version, train, evaluate, serve, monitor and govern LLMs."""
    ctx.obj = State(workspace)


app.command()(init)
app.command()(status)
app.command()(demo)
app.command("doctor")(doctor_command)
app.command("gc")(gc_command)
app.add_typer(db_app, name="db")
app.add_typer(lineage_app, name="lineage")
app.add_typer(audit_app, name="audit")
app.add_typer(runs_app, name="runs")
app.add_typer(model_app, name="model")
app.add_typer(prompt_app, name="prompt")
app.add_typer(curate_app, name="curate")
app.command()(serve)
app.add_typer(deploy_app, name="deploy")
app.add_typer(keys_app, name="keys")
app.add_typer(traces_app, name="traces")
app.add_typer(monitor_app, name="monitor")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval")


def main() -> None:
    """Entry point of the `keel` console script."""
    app()
