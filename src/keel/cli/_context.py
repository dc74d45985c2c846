"""What every command shares: the root `--workspace` option, the store, and output helpers.

Commands parse input, call a function of a lower layer and render its result; nothing else.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from keel.core.errors import KeelError

if TYPE_CHECKING:
    from keel.store import Store

__all__ = ["KeelGroup", "State", "console", "get_store", "print_json"]


def console() -> Console:
    """A console on the current stdout; when it is not a terminal (and COLUMNS is unset), never cropped or wrapped."""
    wide = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
    return Console(width=None if wide else 10_000, highlight=False, soft_wrap=True)


class State:
    """Per-invocation state on `ctx.obj`: the chosen workspace and the store once opened."""

    def __init__(self, workspace: Path | None) -> None:
        self.workspace = workspace
        self.store: Store | None = None


class KeelGroup(typer.core.TyperGroup):
    """The root command group: turns a `KeelError` into one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeelError as exc:
            # Plain print, not Rich: paths and URLs in messages must not be re-wrapped or styled.
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        finally:
            state = ctx.obj
            if isinstance(state, State) and state.store is not None:
                state.store.close()


def get_store(ctx: typer.Context, *, upgrade: bool = True) -> Store:
    """Open (once per invocation) the store of the workspace chosen by `--workspace` or discovery."""
    state: State = ctx.find_root().obj
    if state.store is None:
        from keel.core.settings import load_settings  # here, not at import: `keel --help` needs neither
        from keel.store import open_store

        state.store = open_store(load_settings(state.workspace), upgrade=upgrade)
    return state.store


def print_json(value: Any) -> None:
    """Print machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
