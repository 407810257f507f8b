"""Target profiles: TOML data validated by a schema (``schema``), found and merged by ``loader``."""

from edgeforge.target.loader import TargetRegistry, load_registry
from edgeforge.target.schema import Target

__all__ = ["Target", "TargetRegistry", "load_registry"]
