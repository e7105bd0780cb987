"""Fitness windows: what a search scores its candidates on, from the fitness half of the held-out text only.
The search rule and every measuring tool build them here, so a tool rescoring a search sees its exact windows.

May import: longrope.data.
"""
from __future__ import annotations

import numpy as np

from longrope.data.windows import document_windows, evaluation_documents, needle_windows, sample_windows


def fitness_lengths(mode: str, original_length: int, target: int) -> list[int]:
    """A recovery search scores at L0 and at its length (once when they coincide); the others at their target."""
    return sorted({original_length, target}) if mode == "recovery" else [target]


def fitness_documents(store, length: int, settings) -> np.ndarray | None:
    """Ids of the documents of the fitness TokenStore that a fitness at `length` scores (search.documents: K =
    samples of at least max(min_length, length) tokens, picked as evaluation.documents picks them), or None when
    the fitness scores seeded windows of the store read end to end."""
    if settings.documents is None:  # {} is documents with every default
        return None
    try:
        return evaluation_documents(store, length, settings.seed, settings.samples, **settings.documents)
    except ValueError as error:
        raise ValueError(f"search.documents (fitness at {length} tokens): {error}") from None


def fitness_windows(store, tokenizer, length: int, settings, original_length: int,
                    log=print) -> tuple[np.ndarray, np.ndarray | None]:
    """(windows, scored tokens or None for all) at one fitness length for a run's SearchSettings, from the fitness
    TokenStore: seeded windows, or the first tokens of fitness_documents. needle_ppl (LongRoPE2) scores the recalled
    digits of needles planted ≥ L0 earlier; a window too short to hold the needles and their recall (a recovery
    search at L0) is scored on all its tokens, and `log` says so."""
    seed = [settings.seed, length]
    documents = fitness_documents(store, length, settings)
    starts = None if documents is None else store.documents[documents]
    if settings.fitness == "needle_ppl":
        try:
            needles = needle_windows(store.tokens, tokenizer, length, settings.samples, seed, original_length,
                                     settings.needles, starts)
            return needles.ids, needles.scored
        except ValueError as error:
            log(f"{length} tokens: plain perplexity ({error})")
    if documents is not None:
        return document_windows(store, documents, length), None
    return sample_windows(store.tokens, length, settings.samples, seed=seed), None
