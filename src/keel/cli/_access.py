"""`keel whoami`, `keel access …` and `keel approve`: who is acting, who may do what, four-eyes approvals."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.govern import (
    ACTIONS,
    approve,
    check,
    define_role,
    grant,
    list_bindings,
    list_requests,
    list_roles,
    protect,
    reject,
    revoke,
    whoami,
)

__all__ = ["access_app", "approve_command", "whoami_command"]

access_app = typer.Typer(
    help="Roles on scopes, permission checks, protected targets and dataset classification.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ScopeOption = Annotated[
    str, typer.Option("--scope", help="'*' (the workspace) or KIND:NAME-GLOB, e.g. dataset:faq-* or model:chat.")
]


def whoami_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show the principal this process acts as, its roles, and whether permissions are enforced."""
    me = whoami(get_store(ctx))
    if json_output:
        print_json(me.to_json())
        return
    behalf = f" on behalf of {escape(me.on_behalf_of)}" if me.on_behalf_of else ""
    console().print(f"{escape(me.principal)}{behalf}")
    console().print(f"  roles        {escape(', '.join(me.roles)) or 'none'}")
    state = "on" if me.enforced else "off (no role granted yet: a single user's workspace; `keel access grant`)"
    console().print(f"  enforcement  {state}")


@access_app.command("grant")
def grant_command(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="local:<OS user>, user:<name> or key:<key id>.")],
    role: Annotated[str, typer.Argument(help="viewer, editor, approver, admin, or a custom role.")],
    scope: ScopeOption = "*",
    json_output: JsonOption = False,
) -> None:
    """Grant a role on a scope (the first grant makes you admin first, and turns enforcement on)."""
    binding = grant(get_store(ctx), principal, role, scope)
    if json_output:
        print_json(binding.to_json())
    else:
        console().print(f"Granted {escape(role)} on {escape(scope)} to {escape(principal)}.")


@access_app.command("revoke")
def revoke_command(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="The principal holding the role.")],
    role: Annotated[str, typer.Argument(help="The role to take away.")],
    scope: ScopeOption = "*",
    json_output: JsonOption = False,
) -> None:
    """Take a role on a scope away from a principal."""
    binding = revoke(get_store(ctx), principal, role, scope)
    if json_output:
        print_json(binding.to_json())
    else:
        console().print(f"Revoked {escape(role)} on {escape(scope)} from {escape(principal)}.")


@access_app.command("list")
def list_command(
    ctx: typer.Context,
    principal: Annotated[str | None, typer.Option(help="Only this principal's roles.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List every grant: principal, role, scope, who granted it and when."""
    found = list_bindings(get_store(ctx), principal)
    if json_output:
        print_json([b.to_json() for b in found])
        return
    table = Table("principal", "role", "scope", "granted by", "at (UTC)")
    for b in found:
        table.add_row(
            escape(b.principal), b.role, escape(b.scope), escape(b.created_by), format_time(b.created_at)[:19]
        )
    console().print(table if found else "No roles granted: enforcement is off (`keel access grant`).")


@access_app.command("check")
def check_command(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="Whose permission to check.")],
    action: Annotated[str, typer.Argument(help=f"One of: {', '.join(ACTIONS)}.")],
    resource: Annotated[str, typer.Argument(help="KIND:NAME, e.g. dataset:faq or model:chat.")],
    json_output: JsonOption = False,
) -> None:
    """Say whether a principal may do an action on a resource (exit 1 if not); records nothing."""
    decision = check(get_store(ctx), principal, action, resource)
    if json_output:
        print_json(decision.to_json())
    else:
        verdict = "may" if decision.allowed else "may not"
        roles = ", ".join(decision.roles) or "no role"
        note = "" if decision.enforced else " (enforcement is off: one principal)"
        console().print(f"{escape(principal)} {verdict} {action} on {escape(resource)} (holds {escape(roles)}){note}")
    if not decision.allowed:
        raise typer.Exit(1)


@access_app.command("roles")
def roles_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the roles (built in and custom) and the actions each allows."""
    found = list_roles(get_store(ctx))
    if json_output:
        print_json({name: list(actions) for name, actions in found.items()})
        return
    table = Table("role", "actions")
    for name, actions in found.items():
        table.add_row(name, ", ".join(actions))
    console().print(table)


@access_app.command("role")
def role_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The custom role's name.")],
    allow: Annotated[list[str], typer.Option(help="An action or glob it allows, e.g. model.* (repeat).")],
    description: Annotated[str | None, typer.Option(help="What the role is for.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Define (or redefine) a custom role."""
    actions = define_role(get_store(ctx), name, allow, description=description)
    if json_output:
        print_json({"role": name, "actions": list(actions)})
    else:
        console().print(f"Role {escape(name)} allows {', '.join(actions)}.")


@access_app.command("protect")
def protect_command(
    ctx: typer.Context,
    scope: Annotated[str, typer.Argument(help="KIND:NAME-GLOB, e.g. model:* or deployment:chat.")],
    target: Annotated[str, typer.Argument(help="alias:<name> (e.g. alias:production) or promote.")],
    remove: Annotated[bool, typer.Option("--remove", help="Lift the protection instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Make an alias move or a deployment promotion need another principal's approval."""
    protect(get_store(ctx), scope, target, remove=remove)
    if json_output:
        print_json({"scope": scope, "target": target, "protected": not remove})
    else:
        verb = "no longer needs" if remove else "now needs"
        console().print(f"{escape(target)} on {escape(scope)} {verb} another principal's approval.")


@access_app.command("requests")
def requests_command(
    ctx: typer.Context,
    every: Annotated[bool, typer.Option("--all", help="Include approved, rejected and used requests.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List approval requests, pending ones by default."""
    found = list_requests(get_store(ctx), status=None if every else "pending")
    if json_output:
        print_json([r.to_json() for r in found])
        return
    table = Table("id", "status", "action", "object", "change", "requested by", "decided by")
    for r in found:
        change = ", ".join(f"{k}={v}" for k, v in r.change.items() if k != "from")
        table.add_row(
            r.id, r.status, r.action, escape(r.object_id), escape(change)[:60], escape(r.requested_by),
            escape(r.decided_by or ""),
        )  # fmt: skip
    console().print(table if found else "No approval requests.")


def approve_command(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="The approval request's id (see `keel access requests`).")],
    note: Annotated[str | None, typer.Option(help="Why you approve (or reject); kept with the decision.")] = None,
    evidence: Annotated[
        list[str] | None, typer.Option(help="An id supporting the decision, e.g. eval-result:<id> (repeat).")
    ] = None,
    reject_request: Annotated[bool, typer.Option("--reject", help="Reject the request instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Approve (or reject) another principal's request to move a protected alias or promote a deployment."""
    store = get_store(ctx)
    if reject_request:
        decided = reject(store, request, note=note)
    else:
        decided = approve(store, request, note=note, evidence=evidence)
    if json_output:
        print_json(decided.to_json())
    else:
        console().print(
            f"{decided.status.capitalize()} {decided.id}: {decided.action} on {escape(decided.object_id)} "
            f"requested by {escape(decided.requested_by)}."
        )
