"""What a deployment's traffic cost self-hosted, against the same tokens at a hosted API's prices.

Self-hosted cost = measured tokens × hardware cost per hour ÷ measured throughput, from traces:
throughput is the tokens of the requests the model answered (cache hits excluded) over the time
the deployment was busy (the union of those requests' [start, end] intervals), so the cost is the
busy hours priced at the hardware's hourly rate. A machine kept for the deployment alone costs the
whole period instead (`provisioned_cost`). API prices come from a shipped, dated table that the
workspace's `api_prices.yaml` overrides entry by entry. Knows nothing of the CLI or HTTP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import ConfigError, InputError, NotFoundError
from keel.store import Store
from keel.store.schema import deployments, traces

__all__ = ["ApiPrice", "CostReport", "PriceTable", "cost_report", "load_prices"]

PRICE_FILE = "api_prices.yaml"


class ApiPrice(BaseModel):
    """One hosted API's list price per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = ""
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class Hardware(BaseModel):
    """What the machine serving the deployment costs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_per_hour: float = Field(gt=0)
    name: str = ""


class PriceTable(BaseModel):
    """API prices (and optionally the hardware's), dated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: str
    currency: str = "USD"
    apis: dict[str, ApiPrice] = Field(default_factory=dict)
    hardware: Hardware | None = None
    source: str = "shipped"


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"expected YAML in {where}; it does not parse: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping (as_of, currency, apis, hardware) in {where}; got {type(raw).__name__}")
    return raw


def load_prices(workspace: Path | None = None) -> PriceTable:
    """The shipped price table, overridden entry by entry by `WORKSPACE/api_prices.yaml` when it exists.

    Raises:
        ConfigError: The workspace file is not valid YAML or not a price table (what is wrong, where).

    Examples:
        >>> load_prices().apis["gpt-4o-mini"].input_per_million
        0.15
    """
    shipped = _parse((resources.files("keel.monitor") / "data" / PRICE_FILE).read_text(), "the shipped price table")
    merged: dict[str, Any] = {**shipped, "apis": dict(shipped.get("apis") or {})}
    own = workspace / PRICE_FILE if workspace is not None else None
    if own is not None and own.is_file():
        override = _parse(own.read_text(), str(own))
        apis = override.pop("apis", None) or {}
        if not isinstance(apis, dict):
            raise ConfigError(f"expected `apis:` in {own} to map API names to prices; got {type(apis).__name__}")
        merged["apis"].update(apis)
        merged.update(override)
        merged["source"] = str(own)
    try:
        return PriceTable.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        where = merged.get("source", "shipped")
        raise ConfigError(f"expected a valid price table in {where}: {path}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class CostReport:
    """Self-hosted cost of a period's traffic against one API's prices for the same tokens."""

    deployment: str
    since: datetime
    until: datetime
    requests: int
    cache_hits: int
    tokens_in: int
    tokens_out: int
    busy_seconds: float
    tokens_per_second: float
    hardware_cost_per_hour: float
    self_hosted_cost: float
    provisioned_cost: float
    api: str
    api_input_per_million: float
    api_output_per_million: float
    api_cost: float
    recorded_cost: float
    currency: str
    prices_as_of: str
    prices_source: str

    @property
    def ratio(self) -> float | None:
        """API cost over self-hosted cost (above 1: self-hosting is cheaper), None when nothing was served."""
        return self.api_cost / self.self_hosted_cost if self.self_hosted_cost > 0 else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["since"], out["until"] = format_time(self.since), format_time(self.until)
        out["api_over_self_hosted"] = self.ratio
        return out


def _busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def cost_report(
    store: Store,
    deployment: str,
    *,
    api: str,
    since: datetime,
    until: datetime | None = None,
    hardware_cost_per_hour: float | None = None,
) -> CostReport:
    """Price `deployment`'s traffic between `since` and `until` self-hosted and at `api`'s prices.

    Args:
        store: The workspace store (traces; `api_prices.yaml` beside `keel.yaml` overrides the shipped prices).
        deployment: The deployment whose traces are read.
        api: A name in the price table, such as `gpt-4o-mini`.
        since: Start of the period.
        until: End of the period; now when omitted.
        hardware_cost_per_hour: The serving machine's cost per hour; the price table's `hardware` when omitted.

    Raises:
        InputError: Unknown API name, or no hardware cost given anywhere.
        NotFoundError: No such deployment, and no traces of one by that name.
    """
    table = load_prices(store.settings.workspace)
    price = table.apis.get(api)
    if price is None:
        raise InputError(
            f"expected an API named in the price table ({', '.join(sorted(table.apis))}); got {shown(api)}",
            hint=f"add it under `apis:` in {store.settings.workspace / PRICE_FILE}",
        )
    per_hour = hardware_cost_per_hour if hardware_cost_per_hour is not None else (
        table.hardware.cost_per_hour if table.hardware is not None else None)  # fmt: skip
    if per_hour is None or per_hour <= 0:
        raise InputError(
            "expected the serving hardware's cost per hour above 0; got none",
            hint=f"pass --hardware-cost-per-hour or set `hardware: {{cost_per_hour: ...}}` in {PRICE_FILE}",
        )
    until = until or store.clock()
    query = select(traces.c.at, traces.c.latency_ms, traces.c.tokens_in, traces.c.tokens_out, traces.c.cache_hit,
                   traces.c.cost).where(traces.c.deployment == deployment, traces.c.status == 200,
                                        traces.c.at >= since, traces.c.at <= until)  # fmt: skip
    with store.db.read() as conn:
        rows = conn.execute(query).all()
        known = rows or conn.execute(select(deployments.c.name).where(deployments.c.name == deployment)).first()
        if not known:
            raise NotFoundError(
                f"no deployment named {shown(deployment)} and no traces of one", hint="see `keel deploy list`"
            )
    served = [r for r in rows if not r.cache_hit]
    spans = [(r.at.timestamp() - r.latency_ms / 1000, r.at.timestamp()) for r in served]
    busy = _busy_seconds(spans)
    tokens_in, tokens_out = sum(r.tokens_in for r in served), sum(r.tokens_out for r in served)
    api_cost = (tokens_in * price.input_per_million + tokens_out * price.output_per_million) / 1_000_000
    return CostReport(
        deployment=deployment, since=since, until=until, requests=len(rows), cache_hits=len(rows) - len(served),
        tokens_in=tokens_in, tokens_out=tokens_out, busy_seconds=busy,
        tokens_per_second=(tokens_in + tokens_out) / busy if busy > 0 else 0.0,
        hardware_cost_per_hour=per_hour, self_hosted_cost=busy / 3600 * per_hour,
        provisioned_cost=(until - since) / timedelta(hours=1) * per_hour, api=api,
        api_input_per_million=price.input_per_million, api_output_per_million=price.output_per_million,
        api_cost=api_cost, recorded_cost=sum(r.cost for r in rows), currency=table.currency,
        prices_as_of=table.as_of, prices_source=table.source,
    )  # fmt: skip
