"""What every command shares: the root `--workspace` option, the store, and output helpers.

Commands parse input, call a function of a lower layer and render its result; nothing else.
"""

from __future__ import annotations

import datetime as dt
import enum
import gc
import json
import os
import sys
import uuid
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import typer

from keel.core.echo import safe_message
from keel.core.errors import KeelError

try:  # Typer vendors its own copy of Click (0.20 on); Click's own UsageError is not what it raises
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - an older Typer, on the Click it depends on
    from click.exceptions import UsageError  # type: ignore[assignment]

if TYPE_CHECKING:  # rich (~0.045 CPU-s) loads when something is printed with it, not for `--json` output
    from rich.console import Console

    from keel.store import Store

__all__ = ["KeelGroup", "State", "console", "dumps_json", "get_store", "print_json", "server_collector"]


def console() -> Console:
    """A console on the current stdout; when it is not a terminal (and COLUMNS is unset), never cropped or wrapped."""
    from rich.console import Console

    wide = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
    return Console(width=None if wide else 10_000, highlight=False, soft_wrap=True)


class State:
    """Per-invocation state on `ctx.obj`: the chosen workspace and the store once opened.

    `owns_process` is True when the command runs as the `keel` program (`main`), not inside a caller's process
    (a test's `CliRunner`): only then may a command change what the process imports (`keel curate run`).
    """

    owns_process = False

    def __init__(self, workspace: Path | None) -> None:
        self.workspace = workspace
        self.store: Store | None = None


class KeelGroup(typer.core.TyperGroup):
    """The root command group: turns a `KeelError` into one line on stderr and its exit code.

    Every message it lets out is made safe for a terminal first (`safe_message`): a value echoed from input
    is cut to a few hundred characters and its control characters (ANSI escapes) are shown escaped, also in
    Click's usage errors (`Invalid value for '--workers': …`).
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:
            exc.message = safe_message(exc.message, line_chars=300)
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeelError as exc:
            # Plain print, not Rich: paths and URLs in messages must not be re-wrapped or styled.
            print(f"{type(exc).__name__}: {safe_message(str(exc))}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:  # a sub-command's arguments are parsed here
            exc.message = safe_message(exc.message, line_chars=300)
            raise
        finally:
            state = ctx.obj
            if isinstance(state, State) and state.store is not None:
                state.store.close()


def server_collector() -> None:
    """Before a server's loop: Python's cyclic collector back at its default pace, start-up's objects out of its view.

    `keel.cli._app.main` runs the collector every 100,000 new objects, right for a batch command; a server would
    then pause to scan up to 100,000 young objects mid-request. Default thresholds keep each pause short, and
    `gc.freeze()` moves what imports and the app built (none of it garbage) where no collection rescans it.
    """
    gc.freeze()
    gc.set_threshold(700, 10, 10)


def get_store(ctx: typer.Context, *, upgrade: bool = True) -> Store:
    """Open (once per invocation) the store of the workspace chosen by `--workspace` or discovery."""
    state: State = ctx.find_root().obj
    if state.store is None:
        from keel.core.settings import load_settings  # here, not at import: `keel --help` needs neither
        from keel.store import open_store

        state.store = open_store(load_settings(state.workspace), upgrade=upgrade)
    return state.store


_AS_TEXT = (dt.datetime, dt.date, dt.time, PurePath, uuid.UUID)


def _known(value: Any) -> Any:
    """Encode the few non-JSON types with one obvious text form; refuse everything else.

    A str() fallback would print numpy.bool_(False) as the truthy string "False", so numpy
    scalars and other unknown types raise instead: the library must hand over plain values.
    """
    if isinstance(value, _AS_TEXT):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(
        f"print_json got a {type(value).__module__}.{type(value).__qualname__} ({value!r:.60}); "
        "convert it to a plain JSON type (bool, int, float, str, list, dict, None) where it is made"
    )


def dumps_json(value: Any) -> str:
    """One JSON document, indented; datetimes, paths, UUIDs and enums as text, any other non-JSON type an error."""
    return json.dumps(value, indent=2, default=_known)


def print_json(value: Any) -> None:
    """Print machine-readable output: one JSON document on stdout (see `dumps_json` for what is refused)."""
    sys.stdout.write(dumps_json(value) + "\n")
