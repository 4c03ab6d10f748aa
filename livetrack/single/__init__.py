"""Single-particle localisation: one particle in a small field (an optical trap)."""
