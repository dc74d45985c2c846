"""The package's floors hold: no module imports from a floor above its own (docs/architecture.md).

Every `import keel.x` and `from keel.x import ...` counts, at module level or inside a function, so a lazy
import cannot hide a dependency that runs the wrong way.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "keel"


def _floors() -> dict[str, int]:
    """The floor of each package, read from the table in docs/architecture.md (so the doc is the rule)."""
    floors = {
        name: int(floor)
        for floor, names in re.findall(r"^\| (\d) \| ([^|]+) \|", (ROOT / "docs" / "architecture.md").read_text(), re.M)
        for name in re.findall(r"`(\w+)/`", names)
    }
    assert len(floors) >= 13, floors
    return floors


def test_every_package_has_a_floor() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(_floors()), f"packages missing from docs/architecture.md: {packages - set(_floors())}"


def test_no_package_imports_a_floor_above_its_own() -> None:
    floors = _floors()
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        package = path.relative_to(SRC).parts[0]
        if package not in floors:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keel."):
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names if alias.name.startswith("keel.")]
            else:
                continue
            for module in modules:
                other = module.split(".")[1]
                if floors.get(other, 0) > floors[package]:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} (floor {floors[package]}) imports {module}")
    assert not wrong, "\n".join(wrong)
