"""Floor 7: the `keel` command. It parses input, calls lower layers and renders their results."""

from keel.cli._app import app, main

__all__ = ["app", "main"]
