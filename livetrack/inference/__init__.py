"""The inference service: detection, localisation and sizing on the wire.

Built in issue #4; empty until then.
"""
