"""The root `keel` command: global options, and the nouns each sub-module adds, imported only when used.

`keel --help` and `keel data …` must not import what `keel train …` needs (torch, transformers) or what any
command needs before it runs (SQLAlchemy, pyarrow): each noun's module is imported when that noun is invoked,
and the root help lists them from the one-line summaries below (tests/unit/cli/test_cli_startup.py checks
they match the modules' own help). benchmarks/cli_startup.py measures the start-up.
"""

from __future__ import annotations

import gc
import os
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from keel.cli._context import KeelGroup, State, console

__all__ = ["COMMANDS", "app", "main"]

# name: (module, attribute, the one-line help shown by `keel --help`), in the order `keel --help` lists them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("keel.cli._workspace", "init",
             "Create a workspace: keel.yaml, the .keel/ state folder and the metadata database."),
    "status": ("keel.cli._workspace", "status",
               "Show the workspace, its database and blob store, the schema revision and object counts."),
    "demo": ("keel.cli._demo", "demo",
             "Run Keel's whole loop on a fictional company's documents, offline, narrating each stage."),
    "serve": ("keel.cli._serve", "serve",
              "Serve every deployment through one OpenAI-compatible API (`/v1/chat/completions`, …)."),
    "ui": ("keel.cli._ui", "ui",
           "Serve the web console (data, runs, models, deployments, traces, review, audit); sign in with an API key."),
    "doctor": ("keel.cli._maintenance", "doctor_command",
               "Check the database's integrity, every referenced blob, leftovers, the audit chain and permissions."),
    "gc": ("keel.cli._maintenance", "gc_command",
           "Remove blobs nothing references (left by interrupted writes) and stale partial uploads."),
    "db": ("keel.cli._workspace", "db_app", "The metadata database's schema."),
    "lineage": ("keel.cli._lineage", "lineage_app",
                "The lineage graph: where everything came from and what it went into."),
    "audit": ("keel.cli._audit", "audit_app", "The tamper-evident audit log of every change."),
    "whoami": ("keel.cli._access", "whoami_command",
               "Show the principal this process acts as, its roles, and whether permissions are enforced."),
    "access": ("keel.cli._access", "access_app",
               "Roles on scopes, permission checks, protected targets and dataset classification."),
    "approve": ("keel.cli._access", "approve_command",
                "Approve (or reject) another principal's request to move a protected alias or promote a deployment."),
    "run": ("keel.cli._runs", "runs_app", "Runs: parameters, metrics, artifacts and environment of every job."),
    "model": ("keel.cli._model", "model_app", "The model registry: versions, aliases and their history, cards."),
    "prompt": ("keel.cli._prompt", "prompt_app", "Versioned prompt templates: create, render, alias and roll back."),
    "curate": ("keel.cli._curate", "curate_app",
               "Curate text: read, clean, filter, deduplicate and redact, by recipe."),
    "deploy": ("keel.cli._deploy", "deploy_app",
               "Deployments: routes to model versions, canaries, blue/green, rollback."),
    "key": ("keel.cli._keys", "keys_app", "Gateway API keys: argon2-hashed, scoped to deployments, rate limited."),
    "trace": ("keel.cli._traces", "traces_app", "Traces: one per request the gateway served."),
    "monitor": ("keel.cli._monitor", "monitor_app", "Served traffic: summaries, drift, alerts, guarded rollouts."),
    "feedback": ("keel.cli._feedback", "feedback_app",
                 "Feedback on served answers: scores, labels, corrections; exported as SFT or DPO data."),
    "label": ("keel.cli._label", "label_app",
              "Label data: schemas, queues, annotation in the terminal, agreement, Label Studio/Argilla formats."),
    "data": ("keel.cli._data", "data_app", "Dataset versions: immutable, content-addressed, diffable, traceable."),
    "train": ("keel.cli._train", "train_app", "Fine-tune models: LoRA, full, DPO; resume killed runs; sweep."),
    "index": ("keel.cli._index", "index_app",
              "Retrieval indexes: chunks, embeddings, vector and keyword search over dataset versions."),
    "eval": ("keel.cli._eval", "eval_app", "Evaluation: run suites, compare results, gate candidates."),
    "govern": ("keel.cli._govern", "govern_app",
               "Governance: data-subject erasure with a signed certificate, retention."),
    "pipeline": ("keel.cli._pipeline", "pipeline_app",
                 "Pipelines: the lifecycle declared once in pipeline.yaml, run with caching and gates."),
    "ci": ("keel.cli._pipeline", "ci_app", "CI workflows that run a pipeline on pull requests and on the main branch."),
    "scan": ("keel.cli._govern", "scan",
             "Scan a model version's files: pickles that import or call, executables, safetensors headers."),
}  # fmt: skip
# Command groups are singular nouns (kubectl/gh style). The plural names of December 2026 stay, hidden, for one
# release so scripts written against them keep working.
PLURAL_ALIASES: dict[str, str] = {"runs": "run", "keys": "key", "traces": "trace"}


# typer vendors its own click (typer._click): the commands here are that click's, typed loosely (Any) rather
# than importing the separate `click` package (75 ms) for its names.
def load_command(name: str) -> Any:
    """Import the module of command `name` and build its click command (a group for a noun)."""
    if name in PLURAL_ALIASES:
        alias: Any = load_command(PLURAL_ALIASES[name])
        alias.name, alias.hidden = name, True
        return alias
    module, attribute, _ = COMMANDS[name]
    target = getattr(import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyKeelGroup(KeelGroup):
    """The root group: lists every command from `COMMANDS`, imports one only when it is invoked."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        lazy = [*COMMANDS, *PLURAL_ALIASES]
        return [*super().list_commands(ctx), *(name for name in lazy if name not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or (cmd_name not in COMMANDS and cmd_name not in PLURAL_ALIASES):
            return super().get_command(ctx, cmd_name)
        if self._listing:  # the root help: a summary line, without importing the command
            hidden = cmd_name in PLURAL_ALIASES
            summary = COMMANDS[PLURAL_ALIASES.get(cmd_name, cmd_name)][2]
            return TyperCommand(cmd_name, help=summary, short_help=summary, hidden=hidden)
        self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def load_all(self) -> None:
        """Import every command (for tools that walk the whole tree, e.g. scripts/cli_reference.py)."""
        for name in [*COMMANDS, *PLURAL_ALIASES]:
            if name not in self.commands:
                self.commands[name] = load_command(name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    cls=LazyKeelGroup,
    help="Keel: curate, version, train, evaluate, serve, monitor and govern LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a bug's traceback should be the plain, complete one
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from keel.store import keel_version

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


def main(*args: Any) -> None:
    """Entry point of the `keel` console script: the process is the command's own (`State.owns_process`)."""
    State.owns_process = True
    # pydantic looks for plugins the first time it builds a model, reading the entry points of every installed
    # distribution: ~0.04 CPU-s of each command (4% of a `keel curate run` that commits), for plugins Keel's
    # commands never use. Set PYDANTIC_DISABLE_PLUGINS yourself (even to "") to have them loaded.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # Python's cyclic collector runs every 700 new container objects by default. A command's start-up imports
    # (pyarrow, SQLAlchemy, pydantic: ~140,000 objects, none of them garbage) and a reader's per-record dicts
    # set off ~200 collections, each re-scanning young objects that all survive: 0.13-0.18 of the ~1.9 CPU-s of a
    # `keel curate run` that commits (benchmarks/curation_vs_datatrove.py's corpus, median of 10, as with the
    # collector off). Every 100,000 objects it still runs, so a long command (train) still frees cycles; servers
    # go back to the default pace before their loop (keel.cli._context.server_collector).
    gc.set_threshold(100_000, 20, 10)
    try:
        app(*args)
    finally:
        # At exit Python tears its modules down with several full collections over everything still alive: 0.19-0.23
        # CPU-s after a `keel curate run` that commits (benchmarks/curation_vs_datatrove.py's corpus, 3 runs each),
        # 0.03-0.04 with the survivors frozen first. Objects are still freed and finalised as their modules go;
        # only garbage in reference cycles is left to the operating system (files are closed by `with`, writes
        # committed, before a command returns).
        gc.freeze()
