"""What a run records about its environment: git, Python and every installed package with its version."""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions, version
from pathlib import Path

import pytest

from keel.registry import capture_environment
from keel.registry._env import installed_packages


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_packages_are_what_importlib_metadata_reports_first_of_each_name() -> None:
    expected: dict[str, str] = {}
    for dist in distributions():  # in sys.path order, as imports (and importlib.metadata.version) see them
        if dist.metadata["Name"]:
            expected.setdefault(_canonical(dist.metadata["Name"]), dist.version)
    assert installed_packages() == expected
    assert list(installed_packages()) == sorted(expected)


def test_the_environment_keeps_its_fields(tmp_path: Path) -> None:
    env = capture_environment(seed=3, cwd=tmp_path)
    assert set(env) == {"git", "python", "implementation", "packages", "platform", "machine", "cpu_count",
                        "accelerators", "seed"}  # fmt: skip
    assert env["git"] is None and env["seed"] == 3 and env["python"] == sys.version.split()[0]
    for name in ("sqlalchemy", "pyarrow", "keel-llmops", "typing-extensions"):
        assert env["packages"][name] == version(name)


def test_an_egg_info_folder_is_read_from_its_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    egg = tmp_path / "Odd_Name.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: Odd_Name\nVersion: 1.2.3\n")
    wheel = tmp_path / "other_pkg-0.4.dev1+local.dist-info"
    wheel.mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    packages = installed_packages()
    assert packages["odd-name"] == "1.2.3" and packages["other-pkg"] == "0.4.dev1+local"
