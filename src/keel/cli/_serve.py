"""`keel serve`: run the OpenAI-compatible gateway on uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from keel.cli._context import console, get_store, print_json, server_collector
from keel.core.errors import InputError

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (local use only).")] = False,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (chain) to serve HTTPS with.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Announce the listening address as one JSON line (for supervisors).")
    ] = False,
    no_rollouts: Annotated[
        bool,
        typer.Option("--no-rollouts", help="Do not step guarded rollouts here; leave them to `keel monitor watch`."),
    ] = False,
    with_ui: Annotated[
        bool, typer.Option("--ui", help="Also serve the web console at /ui (as `keel ui` does).")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (uvicorn's); set KEEL_REDIS_URL so they share limits.")
    ] = 1,
    alerts: Annotated[
        Path | None,
        typer.Option(help="Evaluate this alerts file's rules here (as `keel monitor watch --rules`); one worker does."),
    ] = None,
    alerts_every: Annotated[str, typer.Option(help="Time between evaluations of --alerts, e.g. 30s.")] = "30s",
) -> None:
    """Serve every deployment through one OpenAI-compatible API (`/v1/chat/completions`, …)."""
    import uvicorn

    from keel.serve import Gateway, create_app, load_serve_settings

    _check_tls(tls_cert, tls_key)
    store = get_store(ctx)
    overrides: dict[str, Any] = {"require_keys": False} if no_auth else {}
    if no_rollouts:
        overrides["rollout_check_s"] = 0
    if alerts is not None:
        from keel.monitor import load_alert_config, parse_duration

        load_alert_config(alerts)  # a bad file is refused here, once, not logged by every worker
        overrides["alerts_file"] = str(alerts.resolve())
        overrides["alerts_every_s"] = parse_duration(alerts_every).total_seconds()
    settings = load_serve_settings(**overrides)  # a bad KEEL_* value: one line, exit 2
    base = f"{'https' if tls_cert else 'http'}://{host}:{port}"
    if json_output:
        print_json({"url": f"{base}/v1", "metrics": f"{base}/metrics", "auth": not no_auth, "workers": workers}
                   | ({"ui": f"{base}/ui/"} if with_ui else {})
                   | ({"alerts": settings.alerts_file} if settings.alerts_file else {}))  # fmt: skip
    else:
        plural = f", {workers} workers" if workers > 1 else ""
        console().print(
            f"Keel gateway on {base}/v1 (metrics at /metrics){plural}"
            + (f", console on {base}/ui/" if with_ui else "")
            + (f", alert rules of {alerts} every {alerts_every}" if alerts is not None else "")
        )
        if workers > 1 and not settings.redis_url:
            console().print("[yellow]Without KEEL_REDIS_URL each worker keeps its own rate limits and cache.[/]")
    # Bounded shutdown: requests still running after `shutdown_timeout_s` are cut, and the lifespan's
    # close spills traces it could not write within the same bound, so SIGTERM always ends the process.
    app: Any = "keel.serve._workers:gateway_app"
    if workers == 1:
        app = create_app(Gateway(store, settings))
        if with_ui:
            from keel.ui import mount_console

            secure = tls_cert is not None
            mount_console(app, store, secret_key=store.settings.ui_secret, https_only=secure)
    else:
        # Workers are spawned processes that build their own app (keel.serve._workers): they find the
        # workspace and the gateway settings in the environment they inherit from this process.
        os.environ["KEEL_WORKSPACE"] = str(store.settings.workspace)
        if no_auth:
            os.environ["KEEL_REQUIRE_KEYS"] = "false"
        if no_rollouts:
            os.environ["KEEL_ROLLOUT_CHECK_S"] = "0"
        if settings.alerts_file:
            os.environ["KEEL_ALERTS_FILE"] = settings.alerts_file
            os.environ["KEEL_ALERTS_EVERY_S"] = str(settings.alerts_every_s)
        if with_ui:
            app = "keel.ui._workers:gateway_with_console"
            os.environ["KEEL_UI_HTTPS_ONLY"] = "1" if tls_cert else "0"
            if not store.settings.ui_secret:
                # One secret for every worker, or a session signed by one worker is refused by the next.
                import secrets

                os.environ["KEEL_UI_SECRET"] = secrets.token_hex(32)
    server_collector()
    uvicorn.run(app, factory=workers > 1, workers=workers, host=host, port=port, log_level="warning", ws="none",
                timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None)  # fmt: skip


def _check_tls(cert: Path | None, key: Path | None) -> None:
    """Both TLS files or neither, each a readable PEM file."""
    if (cert is None) != (key is None):
        raise InputError("expected both --tls-cert and --tls-key for HTTPS, or neither; got only one")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is None:
            continue
        try:
            head = path.read_bytes()[:4096]
        except OSError as exc:
            raise InputError(f"expected a readable PEM file for {option}; {path}: {exc.strerror}") from None
        if b"-----BEGIN " not in head:
            raise InputError(f"expected a PEM file (-----BEGIN ...) for {option}; {path} is not one")
