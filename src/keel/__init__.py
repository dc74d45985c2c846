"""Keel: an open-source LLMOps platform.

The Python API is the same set of functions the `keel` command calls; the most used are here,
the rest live in their components (`keel.store`, `keel.registry`, …).
"""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
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

# Loaded on first use (PEP 562), so `import keel.cli` and `keel --help` do not pay for SQLAlchemy, Alembic
# and pydantic-settings (~1 s of imports) before a command needs them.
_LAZY = {
    **dict.fromkeys(("KeelError", "Settings", "load_settings"), "core"),
    **dict.fromkeys(
        (
            "alias_model",
            "create_prompt",
            "get_model",
            "get_prompt",
            "list_runs",
            "register_model",
            "render_prompt",
            "start_run",
        ),
        "registry",
    ),  # fmt: skip
    **dict.fromkeys(("Store", "init_workspace", "open_store"), "store"),
}
__getattr__ = lazy_getattr("keel", _LAZY)


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
