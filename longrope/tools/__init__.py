"""Measuring and planning tools, run by hand as `python -m longrope.tools.<name>` and never by a rule: benchmarks
of the fitness, memory and dtype, rescoring of finished searches, the per-GPU memory planner, the tiny base
model's calibration. They share common.py: one way to load a model, a finished search and its fitness windows.
Those a user runs are also commands (pyproject's [project.scripts], each module's main()): longrope-export,
longrope-engine-parity, longrope-plan-memory, longrope-compare-runs, longrope-compare-factors. They print their results
to stdout; an optional extra that only some options need is imported where those options are handled.

May import: anything in longrope. Nothing in longrope imports the tools.
"""
