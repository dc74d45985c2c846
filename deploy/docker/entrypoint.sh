#!/bin/sh
# Make sure the workspace exists (keel.yaml; the database schema is created or upgraded, which is safe
# with many replicas starting at once), then run the given `keel` command, `keel serve` by default.
set -eu
keel init "${KEEL_WORKSPACE}" >/dev/null
exec keel "$@"
