"""Floor 6: the lifecycle, end to end, built from the layers below."""

from keel.pipeline._demo import DemoReport, run_demo

__all__ = ["DemoReport", "run_demo"]
