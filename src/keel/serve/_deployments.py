"""Deployments in the metadata store: weighted routes to model versions, and their full history.

Every change (create, canary, promote, rollback, configure) rewrites the deployment's routes,
appends a `deployment_events` row holding the routes before and after, and is audited, all in
one transaction. The newest event id is the generation gateways poll to reload without restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, func, select, update

from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json
from keel.govern import require
from keel.govern._approvals import approval_gate, consume_approval
from keel.index import RetrievalSettings, check_app
from keel.registry import get_model
from keel.registry._marks import marks_for
from keel.registry._models import UnsafeModelError
from keel.registry._refs import check_name
from keel.store import Store, events, parse_duration
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

# API key scopes that are not deployments: a deployment of one of these names would be callable by every key
# holding the scope for its other meaning (a feedback-only key, a metrics scraper's key).
_RESERVED_SCOPES = {"feedback": "POST /v1/feedback", "metrics": "GET /metrics"}

BackendKind = Literal["openai", "transformers", "sentence-transformers", "llama.cpp"]


class Route(BaseModel):
    """Where a share of a deployment's requests goes: one model version on one backend.

    Attributes:
        model: The registry version that answers, `NAME@vN` (its lineage node links the traces).
        backend: `openai` (an upstream OpenAI-compatible server), `transformers`,
            `sentence-transformers` or `llama.cpp` (a GGUF version; in process, loaded from the registry).
        weight: Relative share of requests.
        upstream: Base URL of the upstream server (`http://host:8000/v1`) for `openai`.
        upstream_model: The model name sent upstream; the registry model's name by default.
        price_in: Cost per 1,000 input tokens, in any currency; traces carry the product.
        price_out: Cost per 1,000 output tokens.
        max_batch: Most requests the `transformers` backend generates together.
        max_wait_ms: How long the batcher waits for a batch to fill.
        max_batch_tokens: Bound of rows × longest row (prompt + output budget) in one
            `transformers` batch: the size of its KV cache, in token positions.
        prompt: A prompt version `NAME@vN` rendered as the first system message of each chat
            request (with the question, the retrieved chunks and the history); pinned when written.
        index: An index version `NAME@vN` searched for each chat request; pinned when written.
        retrieval: How the index is searched (k, minimum score, mode, context budget, query message).
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
    prompt: str | None = None
    index: str | None = None
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)

    @property
    def node(self) -> str:
        """The lineage node of the model version."""
        return f"model-version:{self.model}"

    @property
    def augmented(self) -> bool:
        """Whether chat requests are retrieved for and/or rendered through a prompt (a RAG app)."""
        return self.prompt is not None or self.index is not None

    def label(self) -> str:
        """`model`, plus ` + prompt` and ` + index` when the route has them."""
        return " + ".join(p for p in (self.model, self.prompt, self.index) if p)


class DeploymentSettings(BaseModel):
    """Per-deployment policies.

    Attributes:
        injection: What to do when a prompt looks like an injection: ignore, flag in traces, or block.
        pii: `redact` rewrites personal data in prompts and responses (`<EMAIL>`), `off` leaves it.
        max_tokens: Most output tokens a request may ask for; larger requests are clamped (and flagged).
        cache_ttl_s: How long identical temperature-0 answers are reused; 0 turns the cache off.
        semantic_cache: When set (with `cache_ttl_s`), a temperature-0 question whose MiniLM embedding is
            at least this cosine-similar to a cached one (same route, same rest of the request) gets its answer.
        sticky_header: Requests carrying the same value of this header always take the same route.
        fallback: The route tried when the chosen one fails after retries or its circuit is open.
        record_content: Keep what each chat or completion request asked and was answered (after
            redaction), so feedback can be exported as training data; off keeps metadata only.
        online_eval: The fraction of answers scored in the background by the offline judges and the
            guardrail detectors, stored as feedback with source `judge`; 0 turns it off.
        retain: How long its traces (and feedback) are kept, e.g. `30d`; `keel govern enforce` deletes older ones.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    injection: Literal["off", "flag", "block"] = "flag"
    pii: Literal["off", "redact"] = "off"
    max_tokens: int | None = Field(default=None, gt=0)
    cache_ttl_s: float = Field(default=0.0, ge=0)
    semantic_cache: float | None = Field(default=None, gt=0, le=1)
    sticky_header: str = "x-keel-user"
    fallback: Route | None = None
    record_content: bool = True
    online_eval: float = Field(default=0.0, ge=0, le=1)
    retain: str | None = None

    @field_validator("retain")
    @classmethod
    def _check_retain(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError(f"expected a retention such as 30d or 12h, above zero; got {shown(value)}")
        return value


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployment as the gateway sees it."""

    name: str
    routes: tuple[Route, ...]
    settings: DeploymentSettings
    created_at: datetime
    updated_at: datetime
    erased_data: tuple[dict[str, Any], ...] = ()  # erasure marks: serves a model trained on erased data

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "routes": [r.model_dump(exclude_defaults=True) for r in self.routes],
            "settings": self.settings.model_dump(exclude_defaults=True),
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "erased_data": list(self.erased_data),
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


def _registered_unsafe(store: Store, node: str) -> bool:
    """Whether a model version was registered with `--allow-unsafe` over dangerous scan findings."""
    with store.db.read() as conn:
        return bool(events(conn, action="model.register.unsafe", object_id=node, limit=1))


def _route(store: Store, model: str, allow_unsafe: bool = False, **fields: Any) -> Route:
    version = get_model(store, model, with_files=False)
    if not allow_unsafe and _registered_unsafe(store, version.node):
        raise UnsafeModelError(
            f"refusing to deploy {version.ref}: it was registered with --allow-unsafe over dangerous scan findings",
            hint=f"see `keel scan {version.ref}`; pass --allow-unsafe to deploy it anyway (audited)",
        )
    values = {k: v for k, v in fields.items() if v is not None}
    # Aliases resolve now and the versions are pinned in the route (and so in its history): moving
    # an alias later changes nothing served until the deployment is written again.
    values["prompt"], values["index"] = check_app(store, values.get("prompt"), values.get("index"))
    if isinstance(values.get("retrieval"), dict):
        try:
            values["retrieval"] = RetrievalSettings.model_validate(values["retrieval"])
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise InputError(f"expected valid retrieval settings; {where}: {error['msg']}") from None
    values = {k: v for k, v in values.items() if v is not None}
    try:
        route = Route(model=version.ref, **values)
    except ValidationError as exc:
        raise InputError(f"expected valid route settings for {version.ref}; {exc.errors()[0]['msg']}") from None
    if route.backend == "llama.cpp" and version.format != "gguf":
        raise InputError(
            f"the llama.cpp backend serves GGUF versions; {version.ref} is {version.format}",
            hint=f"export it first: keel model export-gguf {version.ref}",
        )
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


def _audit_unsafe(store: Store, conn: Connection, name: str, route: Route, allowed: bool) -> None:
    if allowed and _registered_unsafe(store, route.node):
        store.audit(conn, "deployment.allow_unsafe", f"deployment:{name}", {"model": route.model})


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
    approval = None
    if action == "promote":  # a protected promotion (`keel access protect deployment:NAME promote`) needs approval
        change = {"from": json.loads(before), "to": json.loads(after)}
        approval = consume_approval(store, conn, "deployment.promote", f"deployment:{row.name}", "promote", change)
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
    if approval:
        details["approval"] = approval
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
    allow_unsafe: bool = False,
) -> Deployment:
    """Create deployment `name` sending every request to one model version.

    Args:
        store: The workspace store.
        name: The deployment's name: what clients pass as `model`.
        model: A registry reference (`chat`, `chat@v2`, `chat@production`), pinned to its version now.
        route: Route fields besides the model (`backend`, `upstream`, `price_in`, …).
        settings: Guardrail, cache, fallback and retention policies.
        allow_unsafe: Deploy a version registered over dangerous scan findings (audited).

    Returns:
        The deployment.

    Raises:
        InputError: A bad name or route field.
        UnsafeModelError: The version was registered with --allow-unsafe and `allow_unsafe` is False.
        NotFoundError: The model reference resolves to no version.

    Examples:
        >>> upstream = {"upstream": "http://127.0.0.1:8000/v1"}
        >>> create_deployment(store, "chat", "chat@v1", route=upstream)  # doctest: +SKIP
    """
    check_name(name, "deployment")
    if name in _RESERVED_SCOPES:
        raise InputError(
            f"expected a deployment name other than {', '.join(repr(n) for n in _RESERVED_SCOPES)}; got {name!r}",
            hint=f"API key scopes of these names grant {_RESERVED_SCOPES[name]}, not a deployment: choose another name",
        )
    require(store, "deployment.create", f"deployment:{name}")
    first = _route(store, model, allow_unsafe, **(route or {}))
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
        _audit_unsafe(store, conn, name, first, allow_unsafe)
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def canary_deployment(
    store: Store,
    name: str,
    model: str | None,
    *,
    weight: int,
    route: dict[str, Any] | None = None,
    allow_unsafe: bool = False,
    evidence: dict[str, Any] | None = None,
) -> Deployment:
    """Send `weight`% of `name`'s requests to `model`, the rest to the current primary route.

    The canary inherits the primary's backend fields, prompt, index and retrieval settings unless
    `route` overrides them; an earlier canary is replaced. With `model` None the canary keeps the
    primary's model, so it differs only in what `route` changes (`{"index": "kb@v2"}`). `evidence` (a rollout
    controller's analysis) is kept on the event and audited.

    Examples:
        >>> canary_deployment(store, "assistant", None, weight=10, route={"index": "kb@v2"})  # doctest: +SKIP

    Raises:
        InputError: `weight` outside 1..99, or bad route fields.
        NotFoundError: No such deployment or model.
    """
    if not 0 < weight < 100:
        raise InputError(f"expected a canary weight between 1 and 99 (percent); got {weight}")
    require(store, "deployment.change", f"deployment:{name}")
    with store.db.write() as conn:
        row = _lock(conn, name)
        primary = _parse_routes(row.routes)[0]
        kept = {"model", "weight"} if model is None else {"model", "weight", "upstream_model"}
        inherited = primary.model_dump(exclude=kept, exclude_defaults=True)
        fields = {**inherited, **(route or {}), "weight": weight}
        if isinstance(inherited.get("retrieval"), dict) and isinstance((route or {}).get("retrieval"), dict):
            fields["retrieval"] = {**inherited["retrieval"], **(route or {})["retrieval"]}  # change only what is given
        canary = _route(store, model or primary.model, allow_unsafe, **fields)
        if canary.model_dump(exclude={"weight"}) == primary.model_dump(exclude={"weight"}):
            raise InputError(
                f"the canary of {name!r} would be the same as its primary route ({primary.label()})",
                hint="change the model, --prompt or --index",
            )
        routes = (primary.model_copy(update={"weight": 100 - weight}), canary)
        _change(store, conn, row, "canary", routes, evidence)
        _audit_unsafe(store, conn, name, canary, allow_unsafe)
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def promote_deployment(store: Store, name: str, *, evidence: dict[str, Any] | None = None) -> Deployment:
    """Blue/green switch: the canary (last route) takes every request; `evidence` is kept on the event.

    Raises:
        InputError: The deployment has a single route, so nothing to promote.
        ApprovalRequiredError: Promotion is protected and not yet approved: a request was filed.
    """
    require(store, "deployment.promote", f"deployment:{name}")
    with approval_gate(store, reason=f"promote {name}"), store.db.write() as conn:
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
    require(store, "deployment.change", f"deployment:{name}")
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
    require(store, "deployment.change", f"deployment:{name}")
    with store.db.write() as conn:
        row = _lock(conn, name)
        routes = _parse_routes(row.routes)
        if len(routes) < 2:
            raise InputError(f"deployment {name!r} has one route; no canary to roll back")
        _change(store, conn, row, "rollback", (routes[0].model_copy(update={"weight": 100}),), evidence)
        return _from_row(conn.execute(select(deployments).where(deployments.c.name == name)).one())


def record_analysis(store: Store, name: str, evidence: dict[str, Any]) -> None:
    """Record a rollout check that changed no route (hold) as an `analysis` event with its evidence."""
    require(store, "deployment.change", f"deployment:{name}")
    with store.db.write() as conn:
        row = _lock(conn, name)
        _change(store, conn, row, "analysis", _parse_routes(row.routes), evidence)


def configure_deployment(store: Store, name: str, settings: DeploymentSettings) -> Deployment:
    """Replace a deployment's policies (guardrails, cache, fallback); recorded like a route change."""
    require(store, "deployment.change", f"deployment:{name}")
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
    """Every deployment, by name, with the erasure marks of each (serving a model trained on erased data)."""
    found = list(load_deployments(store)[1].values())
    with store.db.read() as conn:
        marks = marks_for(conn, [f"deployment:{d.name}" for d in found])
    return [
        replace(d, erased_data=tuple(m.to_json() for m in marks.get(f"deployment:{d.name}", []))) if marks else d
        for d in found
    ]


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
