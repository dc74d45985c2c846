"""`keel ui`: serve the web console on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli._context import console, get_store, print_json, server_collector

__all__ = ["ui"]


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    json_output: Annotated[
        bool, typer.Option("--json", help="Announce the listening address as one JSON line (for supervisors).")
    ] = False,
) -> None:
    """Serve the web console (data, runs, models, deployments, traces, review, audit); sign in with an API key."""
    import uvicorn

    from keel.ui import create_console

    store = get_store(ctx)
    url = f"http://{host}:{port}/"
    if json_output:
        print_json({"url": url})
    else:
        console().print(f"Keel console on {url} (sign in with an API key: `keel key create NAME`)")
    app = create_console(store, secret_key=store.settings.ui_secret)
    server_collector()
    uvicorn.run(app, host=host, port=port, log_level="warning", ws="none")
