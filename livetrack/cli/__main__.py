"""``python -m livetrack.cli``: the ``livetrack`` command (used to start child processes)."""

from livetrack.cli import main

main()
