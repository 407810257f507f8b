"""``python -m edgeforge`` is the CLI."""

from edgeforge.cli.main import entry

if __name__ == "__main__":  # guarded: worker processes import this module without running it
    entry()
