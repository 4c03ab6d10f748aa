"""Acquisition with pymmcore-plus: frame publisher, simulated microscope, feedback control.

Built in issue #6; empty until then.
"""
