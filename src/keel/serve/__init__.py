"""Floor 5: the OpenAI-compatible gateway: deployments and routing, backends, limits, guardrails.

The web stack (FastAPI, Starlette) is imported only when an app is built, so commands that only
manage deployments start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.serve._backends import Backend, CircuitBreaker, CircuitOpenError, OpenAIBackend, Operation
from keel.serve._deployments import (
    Deployment,
    DeploymentEvent,
    DeploymentSettings,
    Route,
    canary_deployment,
    configure_deployment,
    create_deployment,
    deployment_history,
    get_deployment,
    list_deployments,
    promote_deployment,
    rollback_deployment,
)
from keel.serve._errors import (
    BadRequestError,
    GatewayError,
    ModelNotFoundError,
    RateLimitedError,
    TraceNotFoundError,
    UpstreamError,
)
from keel.serve._gateway import Gateway, choose_route
from keel.serve._guardrails import Guardrails, looks_like_injection
from keel.serve._injection import InjectionDetector, InjectionVerdict, LlmGuardScanner
from keel.serve._limits import MemoryRateLimiter, MemoryResponseCache, RedisRateLimiter, RedisResponseCache
from keel.serve._llamacpp import LlamaCppBackend
from keel.serve._local import SentenceTransformersBackend, TransformersBackend
from keel.serve._metrics import GatewayMetrics
from keel.serve._online_eval import EvalSample, OnlineEvaluator
from keel.serve._settings import ServeSettings, load_serve_settings
from keel.serve._thread import serve_in_thread

__all__ = [
    "Backend",
    "BadRequestError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Deployment",
    "DeploymentEvent",
    "DeploymentSettings",
    "Gateway",
    "GatewayError",
    "GatewayMetrics",
    "EvalSample",
    "Guardrails",
    "InjectionDetector",
    "InjectionVerdict",
    "LlmGuardScanner",
    "MemoryRateLimiter",
    "MemoryResponseCache",
    "ModelNotFoundError",
    "LlamaCppBackend",
    "OpenAIBackend",
    "Operation",
    "OnlineEvaluator",
    "RateLimitedError",
    "RedisRateLimiter",
    "RedisResponseCache",
    "Route",
    "SentenceTransformersBackend",
    "ServeSettings",
    "TransformersBackend",
    "TraceNotFoundError",
    "UpstreamError",
    "canary_deployment",
    "choose_route",
    "configure_deployment",
    "create_deployment",
    "create_app",
    "deployment_history",
    "get_deployment",
    "list_deployments",
    "load_serve_settings",
    "looks_like_injection",
    "promote_deployment",
    "rollback_deployment",
    "serve_in_thread",
    "stub_upstream_app",
]


if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(gateway: Gateway) -> Starlette:
    """The gateway's ASGI app (FastAPI); its lifespan starts and closes `gateway`.

    Args:
        gateway: The gateway state and logic.

    Returns:
        The app; serve it with uvicorn, as `keel serve` does.

    Examples:
        >>> app = create_app(Gateway(open_store()))  # doctest: +SKIP
    """
    from keel.serve._app import create_app as build

    return build(gateway)


def stub_upstream_app() -> Starlette:
    """An OpenAI-compatible stub server answering at once: the "remote model" of tests and benchmarks."""
    from keel.serve._stub import stub_upstream_app as build

    return build()
