"""The gateway with the console mounted, as uvicorn's worker processes build it: `keel serve --ui --workers N`.

Lives here, not in `keel.serve`, because the gateway's floor may not import the console's.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["gateway_with_console"]


def gateway_with_console() -> Any:
    """`keel.serve._workers.gateway_app()` with the console at `/ui` (an uvicorn `--factory`).

    The parent `keel serve` put one `KEEL_UI_SECRET` in the environment, so a session signed by one
    worker is accepted by every other.

    Returns:
        The ASGI app of one worker.
    """
    from keel.serve._workers import gateway_app
    from keel.ui import mount_console

    app = gateway_app()
    store = app.state.gateway.store  # the worker's own store (create_app keeps its gateway on app.state)
    secure = os.environ.get("KEEL_UI_HTTPS_ONLY") == "1"  # set by `keel serve` when it serves TLS
    mount_console(app, store, secret_key=store.settings.ui_secret, https_only=secure)
    return app
