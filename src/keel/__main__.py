"""`python -m keel` runs the `keel` command."""

from keel.cli import main

main()
