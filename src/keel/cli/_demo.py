"""`keel demo`: run the lifecycle on built-in sample data, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli._context import console
from keel.pipeline import run_demo

__all__ = ["demo"]


def demo(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Where to create the demo workspace.")] = Path("keel-demo"),
) -> None:
    """Run Keel's loop on a fictional company's documents, offline, narrating each stage."""
    ctx.find_root().obj.workspace = directory
    run_demo(directory, say=console().print)
