"""Deployments in the metadata store: weighted routes to model versions, and their full history.

Every change (create, canary, promote, rollback, configure) rewrites the deployment's routes,
appends a `deployment_events` row holding the routes before and after, and is audited, all in
one transaction. The newest event id is the generation gateways poll to reload without restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, func, select, update

from keel.core.clock import format_time
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json
from keel.registry import get_model
from keel.registry._refs import check_name
from keel.store import Store
from keel.store.schema import deployment_events, deployments

__all__ = [
    "Deployment",
    "DeploymentEvent",
    "DeploymentSettings",
    "Route",
    "canary_deployment",
    "configure_deployment",
    "create_deployment",
    "current_generation",
    "abort_canary",
    "record_analysis",
    "deployment_history",
    "get_deployment",
    "list_deployments",
    "load_deployments",
    "promote_deployment",
    "rollback_deployment",
]

BackendKind = Literal["openai", "transformers", "sentence-transformers"]


class Route(BaseModel):
    """Where a share of a deployment's requests goes: one model version on one backend.

    Attributes:
        model: The registry version that answers, `NAME@vN` (its lineage node links the traces).
        backend: `openai` (an upstream OpenAI-compatible server), `transformers` or
            `sentence-transformers` (in process, loaded from the registry).
        weight: Relative share of requests.
        upstream: Base URL of the upstream server (`http://host:8000/v1`) for `openai`.
        upstream_model: The model name sent upstream; the registry model's name by default.
        price_in: Cost per 1,000 input tokens, in any currency; traces carry the product.
        price_out: Cost per 1,000 output tokens.
        max_batch: Most requests the `transformers` backend generates together.
        max_wait_ms: How long the batcher waits for a batch to fill.
        max_batch_tokens: Bound of rows × longest row (prompt + output budget) in one
            `transformers` batch: the size of its KV cache, in token positions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    backend: BackendKind = "openai"
    weight: int = Field(default=100, ge=0)
    upstream: str | None = None
    upstream_model: str | None = None
    price_in: float = Field(default=0.0, ge=0)
    price_out: float = Field(default=0.0, ge=0)
    max_batch: int = Field(default=8, gt=0)
    max_wait_ms: float = Field(default=10.0, ge=0)
    max_batch_tokens: int = Field(default=65_536, gt=0)

    @property
    def node(self) -> str:
        """The lineage node of the model version."""
        return f"model-version:{self.model}"


class DeploymentSettings(BaseModel):
    """Per-deployment policies.

    Attributes:
        injection: What to do when a prompt looks like an injection: ignore, flag in traces, or block.
        pii: `redact` rewrites personal data in prompts and responses (`<EMAIL>`), `off` leaves it.
        max_tokens: Most output tokens a request may ask for; larger requests are clamped (and flagged).
        cache_ttl_s: How long identical temperature-0 answers are reused; 0 turns the cache off.
        sticky_header: Requests carrying the same value of this header always take the same route.
        fallback: The route tried when the chosen one fails after retries or its circuit is open.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    injection: Literal["off", "flag", "block"] = "flag"
    pii: Literal["off", "redact"] = "off"
    max_tokens: int | None = Field(default=None, gt=0)
    cache_ttl_s: float = Field(default=0.0, ge=0)
    sticky_header: str = "x-keel-user"
    fallback: Route | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployment as the gateway sees it."""

    name: str
    routes: tuple[Route, ...]
    settings: DeploymentSettings
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "routes": [r.model_dump(exclude_defaults=True) for r in self.routes],
            "settings": self.settings.model_dump(exclude_defaults=True),
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """One change of a deployment's routes."""

    id: int
    deployment: str
    action: str
    from_routes: list[dict[str, Any]] | None
    to_routes: list[dict[str, Any]]
    actor: str
    at: datetime
    evidence: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "deployment": self.deployment,
            "action": self.action,
            "from_routes": self.from_routes,
            "to_routes": self.to_routes,
            "actor": self.actor,
            "at": format_time(self.at),
            "evidence": self.evidence,
        }


def _dump(routes: tuple[Route, ...] | list[Route]) -> str:
    return canonical_json([r.model_dump(exclude_defaults=True) for r in routes])


def _parse_routes(text: str) -> tuple[Route, ...]:
    return tuple(Route.model_validate(r) for r in json.loads(text))


def _from_row(row: Any) -> Deployment:
    return Deployment(
        name=row.name,
        routes=_parse_routes(row.routes),
        settings=DeploymentSettings.model_validate_json(row.settings),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _route(store: Store, model: str, **fields: Any) -> Route:
    version = get_model(store, model, with_files=False)
    values = {k: v for k, v in fields.items() if v is not None}
    try:
        route = Route(model=version.ref, **values)
    except ValidationError as exc:
        raise InputError(f"expected valid route settings for {version.ref}; {exc.errors()[0]['msg']}") from None
    if route.backend == "openai" and not route.upstream:
        raise InputError(
            f"the openai backend needs an upstream URL for {version.ref}; got none",
            hint="pass --upstream http://host:port/v1",
        )
    return route


def _lock(conn: Connection, name: str) -> Any:
    row = conn.execute(select(deployments).where(deployments.c.name == name).with_for_update()).first()
    if row is None:
        raise NotFoundError(
            f"no deployment named {name!r}", hint="create it with `keel deploy create NAME --model REF`"
        )
    return row


def _change(
    store: Store,
    conn: Connection,
    row: Any,
    action: str,
    routes: tuple[Route, ...],
    evidence: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    now = store.clock()
    before = row.routes
    after = _dump(routes)
    values: dict[str, Any] = {"routes": after, "updated_at": now, **extra}
    conn.execute(update(deployments).where(deployments.c.name == row.name).values(**values))
    conn.execute(
        deployment_events.insert().values(
            deployment=row.name,
            action=action,
            from_routes=before,
            to_routes=after,
            actor=store.actor,
            at=now,
            evidence=None if evidence is None else canonical_json(evidence),
        )
    )
    details: dict[str, Any] = {"from": json.loads(before), "to": json.loads(after)}
    if evidence is not None:
        details["evidence"] = evidence
    store.audit(conn, f"deployment.{action}", f"deployment:{row.name}", details)


def create_deployment(
    store: Store,
    name: str,
    model: str,
    *,
    route: dict[str, Any] | None = None,
    settings: DeploymentSettings | None = None,
) -> Deployment:
    """Create deployment `name` sending every request to one model version.

    Args:
        store: The workspace store.
        name: The deployment's name: what clients pass as `model`.
        model: A registry reference (`chat`, `chat@v2`, `chat@production`), pinned to its version now.
        route: Route fields besides the model (`backend`, `upstream`, `price_in`, …).
        settings: Guardrail, cache and fallback policies.

    Returns:
        The deployment.

    Raises:
        InputError: A bad name or route field.
        NotFoundError: The model reference resolves to no version.

    Examples:
        >>> upstream = {"upstream": "http://127.0.0.1:8000/v1"}
        >>> create_deployment(store, "chat", "chat@v1", route=upstream)  # doctest: +SKIP
    """
    check_name(name, "deployment")
    first = _route(store, model, **(route or {}))
    settings = settings or DeploymentSettings()
    now = store.clock()
    with store.db.write() as conn:
        if conn.execute(select(deployments.c.name).where(deployments.c.name == name)).first() is not None:
            raise InputError(
                f"deployment {name!r} already exists", hint=f"use `keel deploy canary {name}` to change it"
            )
        routes = _dump([first])
        conn.execute(
            deployments.insert().values(
                name=name,
                routes=routes,
                settings=canonical_json(settings.model_dump(exclude_defaults=True)),
                created_by=store.actor,
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            deployment_events.insert().values(
                deployment=name, action="create", from_routes=None, to_routes=routes, actor=store.actor, at=now
            )
        )
        store.audit(conn, "deployment.create", f"deployment:{name}", {"to": json.loads(routes)})
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def canary_deployment(
    store: Store,
    name: str,
    model: str,
    *,
    weight: int,
    route: dict[str, Any] | None = None,
    evidence: dict[str, Any] | None = None,
) -> Deployment:
    """Send `weight`% of `name`'s requests to `model`, the rest to the current primary route.

    The canary inherits the primary's backend fields unless `route` overrides them; an earlier
    canary is replaced. `evidence` (a rollout controller's analysis) is kept on the event and audited.

    Raises:
        InputError: `weight` outside 1..99, or bad route fields.
        NotFoundError: No such deployment or model.
    """
    if not 0 < weight < 100:
        raise InputError(f"expected a canary weight between 1 and 99 (percent); got {weight}")
    with store.db.write() as conn:
        row = _lock(conn, name)
        primary = _parse_routes(row.routes)[0]
        inherited = primary.model_dump(exclude={"model", "weight", "upstream_model"}, exclude_defaults=True)
        canary = _route(store, model, **{**inherited, **(route or {}), "weight": weight})
        routes = (primary.model_copy(update={"weight": 100 - weight}), canary)
        _change(store, conn, row, "canary", routes, evidence)
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def promote_deployment(store: Store, name: str, *, evidence: dict[str, Any] | None = None) -> Deployment:
    """Blue/green switch: the canary (last route) takes every request; `evidence` is kept on the event.

    Raises:
        InputError: The deployment has a single route, so nothing to promote.
    """
    with store.db.write() as conn:
        row = _lock(conn, name)
        routes = _parse_routes(row.routes)
        if len(routes) < 2:
            raise InputError(f"deployment {name!r} has one route; nothing to promote", hint="start a canary first")
        _change(store, conn, row, "promote", (routes[-1].model_copy(update={"weight": 100}),), evidence)
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def rollback_deployment(store: Store, name: str) -> Deployment:
    """Put back the routes the deployment had before its last change, at once.

    Raises:
        InputError: The deployment has never changed since it was created.
    """
    with store.db.write() as conn:
        row = _lock(conn, name)
        last = conn.execute(
            select(deployment_events)
            .where(deployment_events.c.deployment == name)
            .order_by(deployment_events.c.id.desc())
            .limit(1)
        ).one()
        if last.from_routes is None:
            raise InputError(f"deployment {name!r} has not changed since it was created; nothing to roll back to")
        _change(store, conn, row, "rollback", _parse_routes(last.from_routes))
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def abort_canary(store: Store, name: str, *, evidence: dict[str, Any] | None = None) -> Deployment:
    """Send every request back to the primary (stable) route at once: a rollout's automatic rollback.

    Unlike `rollback_deployment`, which undoes only the last change (after two canary steps that
    is the smaller canary), this drops the canary whatever its weight. Recorded as `rollback`.

    Raises:
        InputError: The deployment has a single route, so no canary to abort.
    """
    with store.db.write() as conn:
        row = _lock(conn, name)
        routes = _parse_routes(row.routes)
        if len(routes) < 2:
            raise InputError(f"deployment {name!r} has one route; no canary to roll back")
        _change(store, conn, row, "rollback", (routes[0].model_copy(update={"weight": 100}),), evidence)
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def record_analysis(store: Store, name: str, evidence: dict[str, Any]) -> None:
    """Record a rollout check that changed no route (hold) as an `analysis` event with its evidence."""
    with store.db.write() as conn:
        row = _lock(conn, name)
        _change(store, conn, row, "analysis", _parse_routes(row.routes), evidence)


def configure_deployment(store: Store, name: str, settings: DeploymentSettings) -> Deployment:
    """Replace a deployment's policies (guardrails, cache, fallback); recorded like a route change."""
    with store.db.write() as conn:
        row = _lock(conn, name)
        values = {"settings": canonical_json(settings.model_dump(exclude_defaults=True))}
        _change(store, conn, row, "configure", _parse_routes(row.routes), None, **values)
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def get_deployment(store: Store, name: str) -> Deployment:
    """The deployment called `name`.

    Raises:
        NotFoundError: No such deployment.
    """
    with store.db.read() as conn:
        row = conn.execute(select(deployments).where(deployments.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"no deployment named {name!r}", hint="see `keel deploy list`")
    return _from_row(row)


def list_deployments(store: Store) -> list[Deployment]:
    """Every deployment, by name."""
    return list(load_deployments(store)[1].values())


def current_generation(conn: Connection) -> int:
    """The id of the newest deployment event: changes whenever any deployment changes."""
    return int(conn.scalar(select(func.max(deployment_events.c.id))) or 0)


def load_deployments(store: Store) -> tuple[int, dict[str, Deployment]]:
    """The current generation and every deployment, read in one snapshot."""
    with store.db.read() as conn:
        generation = current_generation(conn)
        rows = conn.execute(select(deployments).order_by(deployments.c.name)).all()
    return generation, {row.name: _from_row(row) for row in rows}


def deployment_history(store: Store, name: str) -> list[DeploymentEvent]:
    """Every change of `name`'s routes, oldest first.

    Raises:
        NotFoundError: No such deployment.
    """
    get_deployment(store, name)
    with store.db.read() as conn:
        rows = conn.execute(
            select(deployment_events).where(deployment_events.c.deployment == name).order_by(deployment_events.c.id)
        ).all()
    return [
        DeploymentEvent(
            id=int(r.id),
            deployment=r.deployment,
            action=r.action,
            from_routes=json.loads(r.from_routes) if r.from_routes else None,
            to_routes=json.loads(r.to_routes),
            actor=r.actor,
            at=r.at,
            evidence=json.loads(r.evidence) if r.evidence else None,
        )
        for r in rows
    ]
