"""The gateway app as uvicorn's worker processes build it: `keel serve --workers N`.

uvicorn starts each worker from an import string, so the app cannot be handed over as an object:
each worker calls `gateway_app()`, which opens the workspace named by `KEEL_WORKSPACE` and reads
the gateway settings from the environment, as `keel serve` left them for it. Workers share
nothing in memory: traces go to the workspace database, rate limits and the response cache to
Redis when `KEEL_REDIS_URL` is set (else each worker keeps its own), deployments are polled.
"""

from __future__ import annotations

from typing import Any

__all__ = ["gateway_app"]


def gateway_app() -> Any:
    """A fresh gateway app over the environment's workspace (an uvicorn `--factory`).

    Returns:
        The ASGI app of one worker; its lifespan starts and stops that worker's gateway.

    Examples:
        >>> uvicorn.run("keel.serve._workers:gateway_app", factory=True, workers=4)  # doctest: +SKIP
    """
    from keel.core.settings import load_settings
    from keel.serve._app import create_app
    from keel.serve._gateway import Gateway
    from keel.serve._settings import ServeSettings
    from keel.store import open_store

    # The parent `keel serve` already applied migrations: workers only open the store.
    return create_app(Gateway(open_store(load_settings(), upgrade=False), ServeSettings()))
