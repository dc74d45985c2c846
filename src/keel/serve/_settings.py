"""The gateway's settings, declared once: each has its `KEEL_*` variable, type, default and meaning.

Only this module (and `keel.core.settings`) reads the environment; `Gateway` takes a
`ServeSettings`, so tests and embedders pass values explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from keel.core.echo import shown
from keel.core.errors import ConfigError

__all__ = ["ServeSettings", "load_serve_settings"]


class ServeSettings(BaseSettings):
    """Settings of one gateway process.

    Examples:
        >>> ServeSettings(reload_interval_s=0.2).reload_interval_s
        0.2
    """

    model_config = SettingsConfigDict(env_prefix="KEEL_", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Redis URL for rate limits and the response cache shared by replicas."
    )
    require_keys: bool = Field(default=True, description="Refuse requests without a valid API key.")
    reload_interval_s: float = Field(default=1.0, gt=0, description="How often deployments and keys are re-read.")
    trace_queue_size: int = Field(
        default=10_000, gt=0, description="Traces waiting to be written; full = back-pressure."
    )
    trace_batch_size: int = Field(default=1_000, gt=0, description="Most traces written in one transaction.")
    cache_max_entries: int = Field(default=10_000, gt=0, description="Size bound of the in-process response cache.")
    upstream_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one upstream request.")
    upstream_retries: int = Field(default=2, ge=0, description="Retries of a failed upstream request, with backoff.")
    breaker_failures: int = Field(
        default=5,
        gt=0,
        description="Failures within `breaker_window_s` that open a route's circuit, when they are also at least "
        "`breaker_failure_rate` of the calls finished in that window (a dead upstream: after exactly this many).",
    )
    breaker_failure_rate: float = Field(
        default=0.5,
        description="Share of a window's finished upstream calls that must have failed to open the circuit, in "
        "(0, 1]: 0.5 is 50%; 1.0 opens only when every call in the window failed.",
    )
    breaker_window_s: float = Field(
        default=10.0,
        gt=0,
        allow_inf_nan=False,  # `CircuitBreaker` refuses it too, but only at a route's first request
        description="The rolling window, in seconds, over which the breaker counts calls.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest request body accepted; larger ones get 413."
    )
    max_output_tokens: int = Field(
        default=4096, gt=0, description="Most tokens an in-process model generates for one request (a cap)."
    )
    auth_failures: int = Field(
        default=10, gt=0, description="Failed key checks per key id, and per client address, before 429."
    )
    auth_window_s: float = Field(
        default=60.0, gt=0, description="Window of `auth_failures`, and how long a failed secret is remembered."
    )
    breaker_cooldown_s: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="How long an open circuit refuses requests."
    )
    shutdown_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="On shutdown, how long requests in flight and queued traces are waited for; "
        "traces still queued then are spilled to .keel/traces/ and written at the next start.",
    )
    rollout_check_s: float = Field(
        default=5.0,
        ge=0,
        description="How often the gateway looks for guarded rollouts whose interval is due and steps them "
        "(a database claim lets one replica or `keel monitor watch` take each check); 0 leaves them to "
        "`keel monitor watch`.",
    )
    alerts_file: str | None = Field(
        default=None,
        description="An alerts YAML file (`keel monitor watch --rules`) to evaluate inside the gateway; one worker "
        "of the machine evaluates it (a file lease), firing and resolving as `keel monitor watch` does.",
    )
    alerts_every_s: float = Field(
        default=30.0, gt=0, description="How often the gateway evaluates `alerts_file`'s rules."
    )
    query_encoder: Literal["onnx", "onnx-int8", "torch"] = Field(
        default="onnx",
        description="How RAG routes and the semantic cache embed queries: `onnx` runs the index's "
        "sentence-transformers model in ONNX Runtime (exported once per model into `query_encoder_cache`; "
        "vectors within 1e-5 of torch's, about a third of its CPU per query), `onnx-int8` its 8-bit block-wise "
        "weights (about 0.7x fp32's CPU for a lone query, nothing saved in batches; keeps 0.98-0.99 of torch's "
        "top 10 and every top 1 measured: opt-in), `torch` the model as loaded. Where "
        "onnxruntime is missing or the model cannot be exported, the gateway logs why once and uses torch.",
    )
    query_encoder_cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "keel" / "query-encoders",
        description="Folder of exported ONNX query encoders, one sub-folder per model digest (shared by "
        "workspaces and gateway processes).",
    )
    metrics_require_key: bool = Field(
        default=False, description="Serve /metrics only to API keys with the `metrics` scope (or `*`)."
    )

    @field_validator("breaker_failure_rate")
    @classmethod
    def _a_share(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("expected a share of calls in (0, 1], e.g. 0.5 for 50%")
        return value


def load_serve_settings(**overrides: Any) -> ServeSettings:
    """The gateway's settings from the environment (`KEEL_*`) and `overrides`, refused in one line when invalid.

    Raises:
        ConfigError: A value is invalid; each is named by its variable, with what was expected and found.

    Examples:
        >>> load_serve_settings(reload_interval_s=0.2).reload_interval_s
        0.2
    """
    try:
        return ServeSettings(**overrides)
    except ValidationError as exc:
        problems = [
            f"{'KEEL_' + str(e['loc'][0]).upper() if e['loc'] else '?'}: "
            f"{e['msg'].removeprefix('Value error, ')}; got {shown(e.get('input'))}"
            for e in exc.errors()
        ]
        raise ConfigError(
            "invalid gateway settings: " + " | ".join(problems), hint="see docs/serving.md for each KEEL_* setting"
        ) from None
