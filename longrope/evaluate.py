"""Perplexity of a (RoPE-scaled) causal LM on fixed windows."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .model import next_token_nll


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    n_samples: int
    tokens: int  # scored tokens


@torch.no_grad()
def perplexity(model, windows: np.ndarray) -> Perplexity:
    """exp(mean over windows of each window's mean NLL), as the official evaluator; one forward per window.

    A window whose NLL is not finite makes the result infinite rather than an error: a diverging scaling
    is a result, not a crash.
    """
    device = next(model.parameters()).device
    per_window = [next_token_nll(model, torch.as_tensor(w, device=device)[None]).mean().item() for w in windows]
    mean_nll = float(np.mean(per_window))
    ppl = math.exp(mean_nll) if math.isfinite(mean_nll) and mean_nll < 700 else math.inf
    return Perplexity(ppl, len(windows), len(windows) * (windows.shape[1] - 1))
