"""napari: ``process`` tables opened as Tracks and Points over their movie.

The reader (:mod:`livetrack.viewer.reader`) needs neither Qt nor napari to build its
layers; napari finds it through the ``napari.manifest`` entry point
(``livetrack/viewer/napari.yaml``). Qt is imported nowhere outside this package.
"""
