"""Real text for curation tests: the pages of Python's HTML documentation that Debian's python3-doc installs."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DOCS = Path("/usr/share/doc/python3-doc/html")


@dataclass(frozen=True)
class DocPage:
    """One documentation page: its path under the HTML root, its main text, and its code blocks as shown."""

    name: str
    text: str
    code: tuple[str, ...]


def _pages() -> list[DocPage]:
    import lxml.html
    from resiliparse.extract.html2text import extract_plain_text

    root = DOCS.resolve()
    paths = sorted(
        p
        for p in root.rglob("*.html")
        if "_" not in p.relative_to(root).parts[0] and not p.name.startswith(("genindex", "search", "py-modindex"))
    )
    pages = []
    for path in paths:
        html = path.read_text(encoding="utf-8")
        text = extract_plain_text(html, main_content=True, preserve_formatting=True, alt_texts=False, links=False)
        code = tuple(pre.text_content() for pre in lxml.html.fromstring(html).iter("pre"))
        pages.append(DocPage(str(path.relative_to(root)), text, code))
    return pages


@pytest.fixture(scope="session")
def doc_pages() -> list[DocPage]:
    """Every page of python3-doc (~500, 9 MB of text); skipped where it is not installed, failed in CI."""
    if not DOCS.exists():
        if os.environ.get("KEEL_REQUIRE_ALL_TIERS"):
            pytest.fail(f"python3-doc is not installed ({DOCS} is missing); .ci/run installs it")
        pytest.skip(f"needs Debian's python3-doc ({DOCS}): apt-get install python3-doc")
    return _pages()


@pytest.fixture(scope="module")
def _ray_module() -> Iterator[Any]:
    """Ray, and the module's shared runtime, stopped after the module's last test if one left it running.

    Module scope, not session: the runtime's processes (and its object store in shared memory) do not stay up
    through the rest of the suite.
    """
    ray = pytest.importorskip("ray")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_runtime(_ray_module: Any) -> Any:
    """A local Ray runtime shared by a module's Ray tests: started by the first that needs it, stopped at the end.

    Starting one costs ~8-30 s of wall on the shared machine. An engine does not stop a runtime it did not start.
    """
    ray = _ray_module
    if not ray.is_initialized():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ray.init(num_cpus=2, include_dashboard=False, object_store_memory=500 * 1024 * 1024, log_to_driver=False)
    return ray


@pytest.fixture
def no_ray_runtime(_ray_module: Any) -> Any:
    """No Ray runtime in this process (the shared one is stopped if up; the next `ray_runtime` user starts it again)."""
    ray = _ray_module
    if ray.is_initialized():
        ray.shutdown()
    return ray
