"""The wire: the protocol, the client library and CURVE security.

Light by design: imports numpy, pyzmq and msgpack only, so a subscriber installs
without TensorFlow (``pip install livetrack``).
"""
