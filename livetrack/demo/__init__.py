"""``livetrack demo``: simulated microscope + service + controller, each a process, measured."""

from livetrack.demo._run import run_demo

__all__ = ["run_demo"]
