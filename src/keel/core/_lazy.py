"""Load a package's public names on first use (PEP 562): the one `__getattr__` every lazy package uses.

`import keel.cli` and `keel --help` must not pay for SQLAlchemy, pyarrow or pydantic-settings before a command
needs them, so packages map each public name to the submodule defining it and import that module when the name
is first read. Imports nothing of Keel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `package.<modules[name]>` when `name` is first read.

    Args:
        package: The package's dotted name, e.g. "keel.curate".
        modules: Each public name and the submodule (relative to `package`) that defines it.

    Returns:
        The function to assign to the package's `__getattr__`; an unknown name is an `AttributeError`.

    Examples:
        >>> getattr_ = lazy_getattr("keel.core", {"sha256_hex": "ids"})
        >>> getattr_("sha256_hex")(b"")[:8]
        'e3b0c442'
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module}"), name)

    return __getattr__
