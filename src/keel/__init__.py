"""Keel: an open-source LLMOps platform.

The Python API is the same set of functions the `keel` command calls; the most used are here,
the rest live in their components (`keel.store`, `keel.registry`, …).
"""

from keel.core import KeelError, Settings, load_settings
from keel.registry import (
    alias_model,
    create_prompt,
    get_model,
    get_prompt,
    list_runs,
    register_model,
    render_prompt,
    start_run,
)
from keel.store import Store, init_workspace, open_store

__all__ = [
    "KeelError",
    "Settings",
    "Store",
    "alias_model",
    "create_prompt",
    "get_model",
    "get_prompt",
    "init_workspace",
    "list_runs",
    "load_settings",
    "open_store",
    "register_model",
    "render_prompt",
    "start_run",
]
