"""Fitness windows: what a search scores its candidates on, from the fitness half of the held-out text only.
The search rule and every measuring tool build them here, so a tool rescoring a search sees its exact windows.

May import: longrope.data.
"""
from __future__ import annotations

import numpy as np

from longrope.data.windows import needle_windows, sample_windows


def fitness_lengths(mode: str, original_length: int, target: int) -> list[int]:
    """A recovery search scores at L0 and at its length (once when they coincide); the others at their target."""
    return sorted({original_length, target}) if mode == "recovery" else [target]


def fitness_windows(tokens: np.ndarray, tokenizer, length: int, settings, original_length: int,
                    log=print) -> tuple[np.ndarray, np.ndarray | None]:
    """(windows, scored tokens or None for all) at one fitness length for a run's SearchSettings. needle_ppl
    (LongRoPE2) scores the recalled digits of needles planted ≥ L0 earlier; a window too short to hold the needles
    and their recall (a recovery search at L0) is scored on all its tokens, and `log` says so."""
    seed = [settings.seed, length]
    if settings.fitness == "needle_ppl":
        try:
            needles = needle_windows(tokens, tokenizer, length, settings.samples, seed, original_length,
                                     settings.needles)
            return needles.ids, needles.scored
        except ValueError as error:
            log(f"{length} tokens: plain perplexity ({error})")
    return sample_windows(tokens, length, settings.samples, seed=seed), None
