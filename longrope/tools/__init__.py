"""Measuring and planning tools, run by hand as `python -m longrope.tools.<name>` and never by a rule: benchmarks
of the fitness, memory and dtype, rescoring of finished searches, the per-GPU memory planner, the tiny base
model's calibration. They share common.py: one way to load a model, a finished search and its fitness windows.

May import: anything in longrope. Nothing in longrope imports the tools.
"""
