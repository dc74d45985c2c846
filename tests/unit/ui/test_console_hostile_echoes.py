"""The console's error pages repeat hostile query values short and without control characters."""

from __future__ import annotations

from urllib.parse import quote

from .conftest import Workspace
from .test_console import signed_in

HOSTILE = "\x1b[2J\x9b31m\u202e" + "é" * 8_000  # as long as a URL may be (64 KiB, percent-encoded)


def test_error_pages_show_a_long_hostile_value_short(workspace_built: Workspace) -> None:
    with signed_in(workspace_built, workspace_built.admin_key) as admin:
        unknown_api = admin.get(f"/deployments/chat/cost?api={quote(HOSTILE)}&hardware=1")
        canary = admin.get(f"/deployments/chat?hours={quote(HOSTILE)}")
    for page in (unknown_api, canary):
        assert page.status_code == 400, page.text[:500]
        assert len(page.text) < 20_000, len(page.text)
        assert not any(c in page.text for c in ("\x1b", "\x9b", "\u202e"))
    assert f"({len(HOSTILE):,} characters)" in unknown_api.text
