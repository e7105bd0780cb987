"""Parallelism: one sequence split over N ranks with DeepSpeed Ulysses (sequence) for fitness, evaluation and
fine-tuning, and the per-GPU memory planner that picks N (memory, no torch).

May import: longrope.rope, model, patching. Several replicas of a search are longrope.search.fitness's business.
"""
