"""``python -m edgeforge`` is the CLI."""

from edgeforge.cli.main import entry

entry()
