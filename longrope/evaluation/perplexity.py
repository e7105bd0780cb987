"""Perplexity of a (RoPE-scaled) causal LM on fixed windows, with each window's NLL kept for intervals and pairing."""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from longrope.data.windows import NestedWindows
from longrope.evaluation.stats import exp_nll, perplexity_interval
from longrope.model import next_token_nll
from longrope.rope import RopeScaling


def evaluation_lengths(scaling: RopeScaling, lengths: list[int], beyond_target: float) -> list[int]:
    """The lengths a scaling is evaluated at: all for plain RoPE, else up to beyond_target × its target."""
    return [n for n in lengths if scaling.method == "none" or n <= beyond_target * scaling.target_length]


@dataclass(frozen=True)
class Perplexity:
    """exp(mean over units of each unit's mean NLL). A unit is one window (truncate) or one document (sliding,
    the mean over its windows); units are the independent samples that intervals and paired comparisons use."""
    unit_nll: np.ndarray
    tokens: int  # scored tokens

    @property
    def n_samples(self) -> int:
        return len(self.unit_nll)

    @property
    def ppl(self) -> float:
        return exp_nll(float(np.mean(self.unit_nll)))

    def summary(self) -> dict:
        """ppl, its 95 % interval (ppl_lo, ppl_hi), nll_mean and nll_se: the tidy CSV's columns."""
        return perplexity_interval(self.unit_nll)


def check_scored(windows: np.ndarray, scored: np.ndarray | None) -> None:
    """A mask marks tokens of `windows` (same shape); every window must score at least one token after its first."""
    if scored is None:
        return
    if scored.shape != windows.shape or scored.dtype != bool:
        raise ValueError(f"scored must be a bool array of the windows' shape {windows.shape}, "
                         f"got {scored.dtype} {scored.shape}")
    if not scored[:, 1:].any(axis=1).all():
        raise ValueError("every window needs a scored token after its first (the first is never predicted)")


def progress_bar(items, progress: str | None, unit: str = "window", total: int | None = None):
    """`items` with a progress bar labelled `progress` on stderr (in a rule's log, a line at most every 5 s); without
    one when `progress` is None."""
    return tqdm(items, desc=progress, unit=unit, total=total, file=sys.stderr, mininterval=5,
                disable=progress is None)


def window_nll(nll: torch.Tensor, scored: np.ndarray | None) -> torch.Tensor:
    """Each row's mean of `nll` (B, T-1) from next_token_nll, whose entry t is the NLL of token t + 1, over the
    tokens `scored` (T,) marks; over all when None."""
    if scored is None:
        return nll.mean(dim=1)
    return nll[:, torch.as_tensor(scored[1:], device=nll.device)].mean(dim=1)


@torch.no_grad()
def perplexity(model, windows: np.ndarray, scored: np.ndarray | None = None,
               progress: str | None = None) -> Perplexity:
    """One forward per window, as the official evaluator; with `scored` (bool, the windows' shape) a window's NLL is
    the mean over the tokens it marks only (needle-driven fitness). A window whose NLL is not finite makes the
    perplexity infinite rather than an error: a diverging scaling is a result, not a crash. `progress` labels a
    progress bar over the windows (none by default: a search's rescoring calls this for every candidate)."""
    check_scored(windows, scored)
    device = next(model.parameters()).device
    masks = [None] * len(windows) if scored is None else scored
    per_window = [window_nll(next_token_nll(model, torch.as_tensor(w, device=device)[None]), m).item()
                  for w, m in progress_bar(zip(windows, masks), progress, total=len(windows))]
    tokens = len(windows) * (windows.shape[1] - 1) if scored is None else int(scored[:, 1:].sum())
    return Perplexity(np.asarray(per_window), tokens)


@torch.no_grad()
def truncated_perplexities(model, tokens: np.ndarray, windows: NestedWindows, lengths: list[int],
                           scaling: RopeScaling, progress: str | None = None
                           ) -> tuple[dict[int, Perplexity], dict[int, float]]:
    """Perplexity at each of `lengths` on the nested windows, and the seconds spent on forwards of each length.

    A span is run once at the longest of `lengths` it serves; each shorter window is its prefix's mean NLL —
    exactly what a forward of the shorter window alone gives, since the model is causal, as long as the scaling
    rotates both the same (RopeScaling.regime of the model's input length, one token short of the window).
    Lengths in different regimes (dynamic NTK, a short factor set's switch) are run separately. `progress` labels
    a progress bar over the forwards."""
    device = next(model.parameters()).device
    unit_nll = {n: [] for n in lengths}
    seconds = dict.fromkeys(lengths, 0.0)
    groups = [list(group) for _, group in itertools.groupby(sorted(lengths), key=lambda n: scaling.regime(n - 1))]
    forwards = [(group, span, start) for group in groups for span, start in enumerate(windows.starts_at(group[0]))]
    for group, span, start in progress_bar(forwards, progress):
        served = [n for n in group if span < windows.counts[n]]
        t0 = time.time()
        ids = torch.as_tensor(tokens[start : start + served[-1]].astype(np.int64), device=device)[None]
        nll = next_token_nll(model, ids)[0]
        for n in served:
            unit_nll[n].append(nll[: n - 1].mean().item())
        seconds[served[-1]] += time.time() - t0
    return {n: Perplexity(np.asarray(v), len(v) * (n - 1)) for n, v in unit_nll.items()}, seconds


@torch.no_grad()
def sliding_perplexity(model, documents: np.ndarray, window: int, stride: int,
                       progress: str | None = None) -> Perplexity:
    """Sliding-window perplexity over whole documents, as the official evaluator without its 10-window cap.

    Windows of `window` tokens start every `stride` tokens; each scores only the tokens no earlier window
    scored (the first scores all of its own). Result: exp(mean over all windows of their mean NLL); documents
    are equally long, so that is also the mean over documents of each document's mean over its windows.
    `progress` labels a progress bar over the documents.
    """
    if not 0 < stride <= window:
        raise ValueError(f"stride must lie in [1, window = {window}], got {stride}")
    device = next(model.parameters()).device
    per_document, scored = [], 0
    for document in progress_bar(documents, progress, unit="document"):
        per_window, scored_until = [], 0  # every position below scored_until has been scored
        for begin in range(0, len(document) - 1, stride):
            end = min(begin + window, len(document))
            nll = next_token_nll(model, torch.as_tensor(document[begin:end], device=device)[None])[0]
            new = nll[max(scored_until, begin + 1) - (begin + 1):]  # nll[i] scores position begin + 1 + i
            per_window.append(new.mean().item())
            scored, scored_until = scored + len(new), end
            if end == len(document):
                break
        per_document.append(np.mean(per_window))
    return Perplexity(np.asarray(per_document), scored)
