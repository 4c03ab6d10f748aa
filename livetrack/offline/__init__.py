"""Offline reprocessing of recorded movies: the live pipeline over files, resumable."""
