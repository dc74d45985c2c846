"""The web console: server-rendered pages over the whole loop, signed in with an API key (`keel ui`).

A face like the CLI: each page calls library functions and renders them; actions call the same functions
the CLI does, as the signed-in principal, so `keel.govern` permits, refuses and audits them.
Templates and static assets (uPlot, MIT, with its licence) ship in the wheel: no Node build, works offline.
"""

from keel.ui._app import create_console, mount_console

__all__ = ["create_console", "mount_console"]
