"""requirements/lock.txt (with torch.txt and llamacpp.txt) must pin every dependency pyproject.toml declares,
at a version it allows.

Only declared requirements are checked; what they pull in (their own extras included) is pinned by `make lock`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()  # no comments, no environment markers
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def test_every_declared_dependency_is_pinned_at_an_allowed_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = {}
    for name in ("lock.txt", "torch.txt", "llamacpp.txt"):  # llamacpp.txt: the source-only extra .ci/run builds
        pins |= _pins(ROOT / "requirements" / name)
    problems = []
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "keel-llmops":  # an extra naming other extras
            continue
        if name not in pins:
            problems.append(f"{req.name}: not pinned")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}: pinned {pins[name]}, pyproject allows {req.specifier}")
    assert not problems, "run `make lock` after changing pyproject.toml: " + "; ".join(problems)
