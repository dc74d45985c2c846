"""`keel serve`: run the OpenAI-compatible gateway on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli._context import console, get_store, print_json

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (local use only).")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Announce the listening address as one JSON line (for supervisors).")
    ] = False,
) -> None:
    """Serve every deployment through one OpenAI-compatible API (`/v1/chat/completions`, …)."""
    import uvicorn

    from keel.serve import Gateway, ServeSettings, create_app

    store = get_store(ctx)
    settings = ServeSettings(require_keys=False) if no_auth else ServeSettings()
    base = f"http://{host}:{port}"
    if json_output:
        print_json({"url": f"{base}/v1", "metrics": f"{base}/metrics", "auth": not no_auth})
    else:
        console().print(f"Keel gateway on {base}/v1 (metrics at /metrics)")
    # Bounded shutdown: requests still running after `shutdown_timeout_s` are cut, and the lifespan's
    # close spills traces it could not write within the same bound, so SIGTERM always ends the process.
    uvicorn.run(create_app(Gateway(store, settings)), host=host, port=port, log_level="warning", ws="none",
                timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)))  # fmt: skip
