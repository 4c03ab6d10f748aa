"""Online linking of detections into trajectories, and tracking metrics.

Built in issue #5; empty until then.
"""
