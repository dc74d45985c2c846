"""`keel key …`: create (shown once), list and revoke the gateway's API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.govern import create_key, list_keys, revoke_key

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Gateway API keys: argon2-hashed, scoped to deployments, rate limited.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@keys_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
    scope: Annotated[
        list[str] | None, typer.Option(help="A deployment the key may call (repeat); all if omitted.")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Requests per minute allowed (default: unlimited).")] = None,
    burst: Annotated[int | None, typer.Option(help="Requests allowed at once above the rate.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a key; its secret is printed this once and never stored."""
    created = create_key(get_store(ctx), name, scopes=scope, rate_per_minute=rate, burst=burst)
    if json_output:
        print_json({**created.key.to_json(), "secret": created.secret})
        return
    console().print(f"Created key {created.key.id} ({escape(name)}). Its secret, shown only now:")
    console().print(created.secret)


@keys_app.command("list")
def list_command(
    ctx: typer.Context,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List keys (never their secrets)."""
    found = list_keys(get_store(ctx), include_revoked=revoked)
    if json_output:
        print_json([k.to_json() for k in found])
        return
    table = Table("id", "name", "scopes", "rate/min", "created (UTC)", "revoked")
    for k in found:
        rate = "—" if k.rate_per_minute is None else f"{k.rate_per_minute:g}"
        revoked_at = format_time(k.revoked_at)[:19] if k.revoked_at else ""
        table.add_row(
            k.id, escape(k.name), escape(", ".join(k.scopes)), rate, format_time(k.created_at)[:19], revoked_at
        )
    console().print(table if found else "No keys yet: `keel key create NAME`.")


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id.")], json_output: JsonOption = False
) -> None:
    """Revoke a key; gateways refuse it within a second."""
    key = revoke_key(get_store(ctx), key_id)
    if json_output:
        print_json(key.to_json())
    else:
        console().print(f"Revoked {key.id} ({escape(key.name)}).")
