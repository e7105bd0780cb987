"""Token stores: the token ids of a corpus region (train, fitness, evaluation), saved once by the token_ids rule as
a .npy array and read by every job through `load_tokens`.

May import: numpy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def save_tokens(path: str | Path, tokens: np.ndarray) -> None:
    np.save(path, tokens, allow_pickle=False)


def load_tokens(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
