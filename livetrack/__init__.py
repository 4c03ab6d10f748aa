"""livetrack: real-time particle tracking beside the microscope."""

__version__ = "0.1.0"
