"""Floor 6: the lifecycle, end to end, built from the layers below."""

from keel.pipeline._curate import CurationResult, curate, source_node
from keel.pipeline._demo import DemoReport, run_demo

__all__ = ["CurationResult", "DemoReport", "curate", "run_demo", "source_node"]
