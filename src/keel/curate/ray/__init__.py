"""Curation on a Ray Data cluster: the same recipes, reports and outputs as the local engine (`--engine ray`)."""

from keel.curate.ray._engine import RayEngine

__all__ = ["RayEngine"]
