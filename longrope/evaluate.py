"""Perplexity of a (RoPE-scaled) causal LM on fixed windows."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .model import next_token_nll
from .rope import RopeScaling


def evaluation_lengths(scaling: RopeScaling, lengths: list[int], beyond_target: float) -> list[int]:
    """The lengths a scaling is evaluated at: all for plain RoPE, else up to beyond_target × its target."""
    return [n for n in lengths if scaling.method == "none" or n <= beyond_target * scaling.target_length]


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


@torch.no_grad()
def sliding_perplexity(model, documents: np.ndarray, window: int, stride: int) -> Perplexity:
    """Sliding-window perplexity over whole documents, as the official evaluator without its 10-window cap.

    Windows of `window` tokens start every `stride` tokens; each scores only the tokens no earlier window
    scored (the first scores all of its own). Result: exp(mean over all windows of their mean NLL).
    """
    if not 0 < stride <= window:
        raise ValueError(f"stride must lie in [1, window = {window}], got {stride}")
    device = next(model.parameters()).device
    per_window, scored = [], 0
    for document in documents:
        scored_until = 0  # every position below this one has been scored
        for begin in range(0, len(document) - 1, stride):
            end = min(begin + window, len(document))
            nll = next_token_nll(model, torch.as_tensor(document[begin:end], device=device)[None])[0]
            new = nll[max(scored_until, begin + 1) - (begin + 1):]  # nll[i] scores position begin + 1 + i
            per_window.append(new.mean().item())
            scored, scored_until = scored + len(new), end
            if end == len(document):
                break
    mean_nll = float(np.mean(per_window))
    ppl = math.exp(mean_nll) if math.isfinite(mean_nll) and mean_nll < 700 else math.inf
    return Perplexity(ppl, len(documents), scored)
