"""Holographic characterisation: radius, index and height of spheres, each with σ.

A characterisation network estimates them from a crop; a Lorenz–Mie fit of the raw
pixels refines them to the Cramér–Rao bound.
"""
