"""Who may do what: principals, roles granted on scopes, and the one check every mutating call makes.

`require(store, action, resource)` is called at the entry of each library function that changes the
workspace (and of reads of `restricted` datasets), so the CLI, the Python API and the gateway apply the
same rules. Roles (viewer, editor, approver, admin, and custom ones) are granted to a principal on a
scope: `*` (the workspace) or `KIND:NAME-GLOB` such as `dataset:faq-*`. The bindings live in Keel's own
tables. Enforcement starts with the first grant (which gives the workspace its second principal) and
stays on while any role is granted; before it a workspace behaves as a single user's laptop.

The rule is RBAC with glob-matched domains, as casbin states it (`CASBIN_MODEL`): allowed when one of
the principal's bindings has a scope matching the resource and a role with an action glob matching the
action. It is evaluated here, by hand, over that principal's bindings, because pycasbin's domain
matching cost 0.17 ms per new resource with the asking principal's 3 bindings and 39 ms with all 421 (its
role manager rebuilds per domain and keeps every resource ever asked about), against 5 us here
(benchmarks/access.py, same run);
tests check this evaluator against pycasbin's enforcer on random policies (test_access_oracle.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Connection, delete, func, select

from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError, StoreError
from keel.core.ids import canonical_json
from keel.govern._errors import PermissionDeniedError
from keel.store import Store, insert_for
from keel.store.schema import access_bindings, access_protections, access_roles, dataset_classifications, datasets

__all__ = [
    "ACTIONS",
    "BUILTIN_ROLES",
    "CASBIN_MODEL",
    "CLASSIFICATIONS",
    "Binding",
    "Decision",
    "Identity",
    "access_enabled",
    "allowed_by",
    "check",
    "classify_dataset",
    "current_principal",
    "dataset_classification",
    "define_role",
    "grant",
    "list_bindings",
    "list_roles",
    "protect",
    "protected_targets",
    "require",
    "require_read",
    "revoke",
    "whoami",
]

# Every action a check names, with what it guards; custom roles may list these or globs over them.
ACTIONS: dict[str, str] = {
    "dataset.read": "read the records of a dataset classified restricted (others are readable by anyone)",
    "dataset.commit": "commit a new dataset version (also curate and split)",
    "dataset.alias": "move a dataset tag",
    "dataset.classify": "set a dataset's classification",
    "model.register": "register a model version (also train, quantise, import)",
    "model.alias": "move a model alias",
    "prompt.create": "create a prompt version",
    "prompt.alias": "move a prompt alias",
    "index.build": "build a retrieval index version",
    "eval.run": "record an eval result",
    "run.write": "start a run and log to it",
    "console.read": "sign in to the web console (`keel ui`) on the workspace",
    "feedback.write": "record feedback on a served answer (the console's review queue, `keel feedback add`)",
    "label.write": "set label schemas, make label queues and label their items (`keel label`)",
    "deployment.create": "create a deployment",
    "deployment.change": "canary, roll back or configure a deployment",
    "deployment.promote": "promote a deployment's canary",
    "key.create": "create a gateway API key",
    "key.revoke": "revoke a gateway API key",
    "access.grant": "grant and revoke roles, define roles, protect targets",
    "approval.approve": "approve or reject another principal's request to move a protected target",
}
_EDITOR = tuple(a for a in ACTIONS if a.split(".")[0] not in ("key", "access", "approval") and a != "dataset.classify")
BUILTIN_ROLES: dict[str, tuple[str, ...]] = {
    "viewer": ("*.read",),
    "editor": _EDITOR,
    "approver": ("*.read", "approval.approve"),
    "admin": ("*",),
}
CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")
_KINDS = ("dataset", "model", "prompt", "index", "deployment", "eval", "run", "key")
_SCOPE = re.compile(rf"\*|(?:{'|'.join(_KINDS)}):[A-Za-z0-9*?\[\]._-]{{1,200}}")
_PRINCIPAL = re.compile(r"(?:local|user):[A-Za-z0-9][A-Za-z0-9._@-]{0,127}|key:[0-9A-HJKMNP-TV-Z]{26}")
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_ACTION_GLOB = re.compile(r"[a-z*?][a-z0-9_.*?]{0,63}")
# How long a process trusts its policy snapshot before reloading it; changes made through this store
# are seen at once. Like the gateway's key refresh: a revocation reaches a running gateway within it.
REFRESH_SECONDS = 1.0
_SNAPSHOT = "keel.govern.access"
_MAX_DECISIONS = 100_000

# The rule in casbin's terms (RBAC with domains): a binding (principal, role, scope) is `g`, its scope a glob
# matched against the resource (domain matching function: fnmatch), each role's action globs are `p`.
CASBIN_MODEL = """
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, act
[role_definition]
g = _, _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub, r.obj) && fnmatch(r.act, p.act)
"""


@dataclass(frozen=True, slots=True)
class Binding:
    """One grant: `principal` holds `role` on `scope`."""

    principal: str
    role: str
    scope: str
    created_by: str
    created_at: Any

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "principal": self.principal,
            "role": self.role,
            "scope": self.scope,
            "created_by": self.created_by,
            "created_at": format_time(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of `check`: allowed or not, and whether enforcement is on at all."""

    principal: str
    action: str
    resource: str
    allowed: bool
    enforced: bool
    roles: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "allowed": self.allowed,
            "enforced": self.enforced,
            "roles": list(self.roles),
        }


@dataclass(frozen=True, slots=True)
class Identity:
    """What `keel whoami` shows."""

    principal: str
    kind: str
    on_behalf_of: str | None
    roles: tuple[str, ...]
    enforced: bool
    principals: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "principal": self.principal,
            "kind": self.kind,
            "on_behalf_of": self.on_behalf_of,
            "roles": list(self.roles),
            "enforced": self.enforced,
            "principals": self.principals,
        }


@dataclass
class _Snapshot:
    """The policy as loaded at `loaded_at`: bindings, roles, restricted datasets, and memoised decisions."""

    loaded_at: float
    bindings: list[Binding]
    roles: dict[str, tuple[str, ...]]
    restricted: frozenset[str]
    decisions: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    by_principal: dict[str, list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for b in self.bindings:
            self.by_principal.setdefault(b.principal, []).append((b.scope, self.roles.get(b.role, ())))

    @property
    def principals(self) -> set[str]:
        return set(self.by_principal)

    @property
    def enforced(self) -> bool:
        # The first grant binds the granter (admin) and the grantee: two principals. Enforcement then stays
        # on while any role is granted, so revoking the others never reopens the workspace to everyone.
        return bool(self.bindings)

    def allows(self, principal: str, resource: str, action: str) -> bool:
        key = (principal, resource, action)
        answer = self.decisions.get(key)
        if answer is None:
            if len(self.decisions) >= _MAX_DECISIONS:  # bound the memo in a long-running process
                self.decisions.clear()
            answer = self.decisions[key] = allowed_by(self.by_principal.get(principal, ()), resource, action)
        return answer

    def roles_of(self, principal: str) -> tuple[str, ...]:
        return tuple(f"{b.role} on {b.scope}" for b in self.bindings if b.principal == principal)


def allowed_by(grants: Iterable[tuple[str, tuple[str, ...]]], resource: str, action: str) -> bool:
    """Whether any (scope glob, role's action globs) grant covers `action` on `resource`: CASBIN_MODEL's rule.

    Examples:
        >>> allowed_by([("dataset:faq-*", ("dataset.commit",))], "dataset:faq-en", "dataset.commit")
        True
        >>> allowed_by([("*", ("*.read",))], "dataset:faq", "dataset.commit")
        False
    """
    return any(
        fnmatchcase(resource, scope) and any(fnmatchcase(action, allowed) for allowed in actions)
        for scope, actions in grants
    )


def _binding(row: Any) -> Binding:
    return Binding(row.principal, row.role, row.scope, row.created_by, row.created_at)


def _load(conn: Connection) -> _Snapshot:
    bindings = [_binding(r) for r in conn.execute(select(access_bindings).order_by(access_bindings.c.principal))]
    roles = dict(BUILTIN_ROLES)
    for row in conn.execute(select(access_roles.c.name, access_roles.c.actions)):
        roles[row.name] = tuple(json.loads(row.actions))
    restricted = frozenset(
        conn.scalars(
            select(dataset_classifications.c.name).where(dataset_classifications.c.classification == "restricted")
        ).all()
    )
    return _Snapshot(time.monotonic(), bindings, roles, restricted)


def _snapshot(store: Store) -> _Snapshot:
    snap: _Snapshot | None = store.extensions.get(_SNAPSHOT)
    if snap is None or time.monotonic() - snap.loaded_at > REFRESH_SECONDS:
        with store.db.read() as conn:
            snap = store.extensions[_SNAPSHOT] = _load(conn)
    return snap


def policy_changed(store: Store) -> None:
    """Forget this store's snapshot after it changed the policy: its next check reloads."""
    store.extensions.pop(_SNAPSHOT, None)


_changed = policy_changed


def current_principal(store: Store) -> str:
    """The authenticated principal acting through `store`: `key:<id>` when `KEEL_API_KEY` is set, else `local:<user>`.

    The key is verified (argon2) once per store. `KEEL_ACTOR` never changes the answer: it is the
    "on behalf of" note the audit log records beside it.

    Raises:
        AuthenticationError: `KEEL_API_KEY` is malformed, unknown, wrong or revoked.

    Examples:
        >>> current_principal(store)  # doctest: +SKIP
        'local:alice'
    """
    if store.principal is None and store.settings.api_key:
        from keel.govern._keys import authenticate_key  # argon2 (the serve extra) only for key principals

        store.principal = f"key:{authenticate_key(store, store.settings.api_key).id}"
    return store.actor


def access_enabled(store: Store) -> bool:
    """Whether permissions are enforced: from the first grant (two principals) while any role is granted."""
    return _snapshot(store).enforced


def _deny(store: Store, principal: str, action: str, resource: str, snap: _Snapshot) -> PermissionDeniedError:
    roles = ", ".join(snap.roles_of(principal)) or "no role"
    error = PermissionDeniedError(
        f"{principal} may not {action} on {resource} (holds {roles})",
        hint=f"ask an admin to run `keel access grant {principal} ROLE --scope {resource}`",
    )
    try:  # the denial is recorded in its own transaction: the refused change never opened one
        with store.db.write() as conn:
            store.audit(conn, "access.denied", resource, {"action": action, "principal": principal})
    except StoreError:  # a read-only workspace: the refusal still stands, unrecorded
        pass
    return error


def require(store: Store, action: str, resource: str) -> str:
    """Refuse, with an audited denial, unless the acting principal may do `action` on `resource`.

    Call it at the entry of a library function, before its transaction: the one check behind the CLI,
    the Python API and the gateway. Until the first grant every action is allowed (a single user's
    workspace behaves as before roles existed).

    Args:
        store: The workspace store; its principal is the one checked.
        action: One of `ACTIONS`, e.g. `dataset.commit`.
        resource: `KIND:NAME`, e.g. `dataset:faq`, or `*` for the workspace itself.

    Returns:
        The principal, for the caller to record.

    Raises:
        PermissionDeniedError: Not allowed (exit code 2); an `access.denied` event was recorded.
        AuthenticationError: `KEEL_API_KEY` does not authenticate.

    Examples:
        >>> require(store, "dataset.commit", "dataset:faq")  # doctest: +SKIP
        'local:alice'
    """
    principal = current_principal(store)
    snap = _snapshot(store)
    if snap.enforced and not snap.allows(principal, resource, action):
        raise _deny(store, principal, action, resource, snap)
    return principal


def require_read(store: Store, dataset: str) -> None:
    """Refuse to read a `restricted` dataset's records without the `dataset.read` permission on it.

    Costs a set lookup for any other dataset (the restricted names come with the policy snapshot).
    """
    snap = _snapshot(store)
    if dataset in snap.restricted and snap.enforced:
        require(store, "dataset.read", f"dataset:{dataset}")


def check(store: Store, principal: str, action: str, resource: str) -> Decision:
    """Whether `principal` may do `action` on `resource`, without recording anything (`keel access check`)."""
    _check_principal(principal)
    snap = _snapshot(store)
    allowed = not snap.enforced or snap.allows(principal, resource, action)
    return Decision(principal, action, resource, allowed, snap.enforced, snap.roles_of(principal))


def _check_principal(principal: str) -> str:
    if not _PRINCIPAL.fullmatch(principal):
        raise InputError(
            f"expected a principal local:<OS user>, user:<name> or key:<key id>; got {shown(principal)}",
            hint="see `keel whoami` and `keel key list`",
        )
    return principal


def _check_scope(scope: str) -> str:
    if not _SCOPE.fullmatch(scope):
        raise InputError(
            f"expected a scope '*' (the workspace) or KIND:NAME-GLOB with KIND one of {', '.join(_KINDS)} "
            f"(e.g. dataset:faq-*); got {shown(scope)}"
        )
    return scope


def grant(store: Store, principal: str, role: str, scope: str = "*") -> Binding:
    """Grant `role` to `principal` on `scope`; the first grant of a workspace makes its granter admin first.

    That first grant is what turns enforcement on (a second principal), so the granter, until then the
    workspace's only user, keeps every permission instead of locking themselves out.

    Raises:
        InputError: A malformed principal or scope.
        NotFoundError: No such role.
        PermissionDeniedError: The granter may not grant on this scope.
    """
    _check_principal(principal)
    _check_scope(scope)
    granter = require(store, "access.grant", scope)
    now = store.clock()
    with store.db.write() as conn:
        roles = _load(conn).roles
        if role not in roles:
            raise NotFoundError(f"no role named {role!r}; roles: {', '.join(sorted(roles))}")
        if not conn.scalar(select(func.count()).select_from(access_bindings)):
            _insert_binding(store, conn, granter, "admin", "*", bootstrap=True)
        _insert_binding(store, conn, principal, role, scope)
    _changed(store)
    return Binding(principal, role, scope, granter, now)


def _insert_binding(
    store: Store, conn: Connection, principal: str, role: str, scope: str, *, bootstrap: bool = False
) -> None:
    row = {"principal": principal, "role": role, "scope": scope, "created_by": store.actor, "created_at": store.clock()}
    done = conn.execute(insert_for(conn, access_bindings).values(**row).on_conflict_do_nothing())
    if done.rowcount:
        details = {"principal": principal, "role": role, "scope": scope, "bootstrap": bootstrap}
        store.audit(conn, "access.grant", f"principal:{principal}", details)


def revoke(store: Store, principal: str, role: str, scope: str = "*") -> Binding:
    """Take `role` on `scope` away from `principal`.

    Raises:
        NotFoundError: `principal` does not hold that role on that scope.
        InputError: It is the last admin binding on the whole workspace while others hold roles.
    """
    _check_principal(principal)
    _check_scope(scope)
    require(store, "access.grant", scope)
    key = (
        (access_bindings.c.principal == principal)
        & (access_bindings.c.role == role)
        & (access_bindings.c.scope == scope)
    )
    with store.db.write() as conn:
        row = conn.execute(select(access_bindings).where(key)).first()
        if row is None:
            raise NotFoundError(f"{principal} holds no role {role!r} on {scope!r}", hint="see `keel access list`")
        admins = conn.scalar(
            select(func.count()).where(access_bindings.c.role == "admin", access_bindings.c.scope == "*")
        )
        others = conn.scalar(select(func.count()).where(access_bindings.c.principal != principal))
        if role == "admin" and scope == "*" and admins == 1 and others:
            raise InputError(
                f"{principal} is the workspace's last admin; revoking it would leave no one able to grant",
                hint="grant admin to another principal first",
            )
        conn.execute(delete(access_bindings).where(key))
        store.audit(conn, "access.revoke", f"principal:{principal}", {"role": role, "scope": scope})
    _changed(store)
    return _binding(row)


def list_bindings(store: Store, principal: str | None = None) -> list[Binding]:
    """Every grant, or one principal's, by principal."""
    query = select(access_bindings).order_by(access_bindings.c.principal, access_bindings.c.scope)
    if principal is not None:
        query = query.where(access_bindings.c.principal == _check_principal(principal))
    with store.db.read() as conn:
        return [_binding(row) for row in conn.execute(query)]


def list_roles(store: Store) -> dict[str, tuple[str, ...]]:
    """Every role (built in and custom) and the action globs it allows."""
    with store.db.read() as conn:
        return _load(conn).roles


def define_role(store: Store, name: str, actions: list[str], *, description: str | None = None) -> tuple[str, ...]:
    """Create or replace a custom role allowing `actions` (names from `ACTIONS`, or globs such as `model.*`).

    Raises:
        InputError: A built-in role's name, a malformed name, or an action glob that matches no action.
    """
    if not _ROLE.fullmatch(name) or name in BUILTIN_ROLES:
        raise InputError(
            f"expected a new role name of lowercase letters, digits, '_' or '-' (not {', '.join(BUILTIN_ROLES)}); "
            f"got {name!r}"
        )
    for action in actions:
        if not _ACTION_GLOB.fullmatch(action) or not any(fnmatchcase(known, action) for known in ACTIONS):
            raise InputError(f"expected actions from: {', '.join(ACTIONS)} (or globs over them); got {shown(action)}")
    if not actions:
        raise InputError("expected at least one action for the role (--allow dataset.commit ...); got none")
    require(store, "access.grant", "*")
    row = {
        "name": name,
        "actions": canonical_json(sorted(set(actions))),
        "description": description,
        "created_by": store.actor,
        "created_at": store.clock(),
    }
    with store.db.write() as conn:
        conn.execute(
            insert_for(conn, access_roles)
            .values(**row)
            .on_conflict_do_update(index_elements=["name"], set_={"actions": row["actions"]})
        )
        store.audit(conn, "access.role", f"role:{name}", {"actions": sorted(set(actions))})
    _changed(store)
    return tuple(sorted(set(actions)))


def protect(store: Store, scope: str, target: str, *, remove: bool = False) -> None:
    """Protect (or unprotect) an alias (`alias:production`) or deployment promotion (`promote`) on `scope`.

    A protected move needs another principal's approval (`keel approve REQUEST`).

    Raises:
        InputError: A malformed scope or target.
    """
    _check_scope(scope)
    if not (target == "promote" or re.fullmatch(r"alias:[a-z][a-z0-9_-]{0,63}", target)):
        raise InputError(f"expected a target alias:<name> (e.g. alias:production) or promote; got {shown(target)}")
    if target == "promote" and not scope.startswith("deployment:"):
        raise InputError(f"promote protects deployments: expected a scope deployment:NAME-GLOB; got {shown(scope)}")
    require(store, "access.grant", scope)
    with store.db.write() as conn:
        if remove:
            conn.execute(
                delete(access_protections).where(
                    access_protections.c.scope == scope, access_protections.c.target == target
                )
            )
        else:
            row = {"scope": scope, "target": target, "created_by": store.actor, "created_at": store.clock()}
            conn.execute(insert_for(conn, access_protections).values(**row).on_conflict_do_nothing())
        store.audit(conn, "access.unprotect" if remove else "access.protect", scope, {"target": target})


def protected_targets(conn: Connection) -> list[tuple[str, str]]:
    """Every (scope, target) protection."""
    return [(r.scope, r.target) for r in conn.execute(select(access_protections.c.scope, access_protections.c.target))]


def classify_dataset(store: Store, name: str, classification: str) -> dict[str, Any]:
    """Set a dataset's classification; reading a `restricted` one's records then needs `dataset.read`.

    `keel.data._classification` writes it: one writer, which also seals a restricted dataset's later versions.
    """
    from keel.data._classification import classify_dataset as classify

    return classify(store, name, classification)


def dataset_classification(conn: Connection, name: str) -> str:
    """A dataset's classification; `internal` when never set.

    Raises:
        NotFoundError: No such dataset.
    """
    if conn.scalar(select(datasets.c.name).where(datasets.c.name == name)) is None:
        raise NotFoundError(f"no dataset named {name!r}", hint="see `keel data list`")
    value = conn.scalar(select(dataset_classifications.c.classification).where(dataset_classifications.c.name == name))
    return str(value) if value is not None else "internal"


def whoami(store: Store) -> Identity:
    """Who this store acts as, with its roles and whether enforcement is on."""
    principal = current_principal(store)
    snap = _snapshot(store)
    return Identity(
        principal=principal,
        kind=principal.split(":", 1)[0],
        on_behalf_of=store.settings.on_behalf_of,
        roles=snap.roles_of(principal),
        enforced=snap.enforced,
        principals=len(snap.principals),
    )
