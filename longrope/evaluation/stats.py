"""How far a reported number would move under resampling: 95 % intervals for a perplexity (from per-window NLLs),
for a retrieval accuracy (Wilson), and for the ratio of two perplexities measured on the same windows (paired
bootstrap). Pure numpy and the standard library."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
BOOTSTRAP_MIN_UNITS = 8


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided Student-t critical value: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher
    expansion in 1/df (error below 0.002 from df = 3 on), so a mean of a few windows gets a wide enough interval."""
    p, z = 0.5 + level / 2, _z(level)
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * df**4))


def exp_nll(nll: float) -> float:
    """Perplexity of a mean NLL; a diverging scaling gives infinity, not an overflow error."""
    return math.exp(nll) if math.isfinite(nll) and nll < 700 else math.inf


def perplexity_interval(unit_nll, level: float = LEVEL) -> dict:
    """exp(mean NLL) with its t interval: the standard error is over the units (windows, or documents when a
    document is scored by several sliding windows), which are sampled independently. Fewer than two units, or a
    non-finite NLL, give no interval (NaN)."""
    nll = np.asarray(unit_nll, dtype=float)
    mean = float(nll.mean())
    if len(nll) < 2 or not np.isfinite(nll).all():
        return {"ppl": exp_nll(mean), "ppl_lo": math.nan, "ppl_hi": math.nan, "nll_mean": mean, "nll_se": math.nan}
    se = float(nll.std(ddof=1) / math.sqrt(len(nll)))
    half = t_quantile(len(nll) - 1, level) * se
    return {"ppl": exp_nll(mean), "ppl_lo": exp_nll(mean - half), "ppl_hi": exp_nll(mean + half), "nll_mean": mean,
            "nll_se": se}


def wilson_interval(successes: float, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion; right at 0 and 1 and with few trials, where the normal one fails.
    A mean of scores in [0, 1] (RULER's string_match_all) may pass its sum: its variance is at most p(1-p), so the
    interval is conservative."""
    if trials < 1:
        raise ValueError(f"a proportion needs at least one trial, got {trials}")
    z, p = _z(level), successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap_ratio(nll_a, nll_b, resamples: int = 2000, seed: int = 0,
                           level: float = LEVEL) -> tuple[float, float, float]:
    """ppl_a / ppl_b for two models or scalings scored on the same units (unit i of a and of b is one window),
    and the expanded percentile interval of that ratio over `resamples` resamplings of the units, drawn from
    `seed`. Resampling pairs, not each side alone, removes the windows' shared difficulty from the interval. Below
    BOOTSTRAP_MIN_UNITS units resampling cannot reach the level (4 units cover 79 %), so the interval is the
    paired t interval of the log-ratio instead. A non-finite NLL gives no ratio, one unit no interval (NaN)."""
    a, b = np.asarray(nll_a, dtype=float), np.asarray(nll_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired NLLs must be two equally long lists of units, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan, math.nan, math.nan
    diff, n = a - b, len(a)
    if n < 2:
        return math.exp(diff.mean()), math.nan, math.nan
    if n < BOOTSTRAP_MIN_UNITS:
        half = t_quantile(n - 1, level) * diff.std(ddof=1) / math.sqrt(n)
        return math.exp(diff.mean()), math.exp(diff.mean() - half), math.exp(diff.mean() + half)
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    lo, hi = expanded_percentile_interval(diff[picks].mean(axis=1), n, level)
    return math.exp(diff.mean()), math.exp(lo), math.exp(hi)


def expanded_percentile_interval(draws, units: float, level: float = LEVEL,
                                 df: float | None = None) -> tuple[float, float]:
    """The interval of a statistic from its bootstrap `draws` over `units` resampled units. The plain percentile
    interval is still a little narrow at 8-16 units (86-90 %): resampling shrinks the units' variance by
    (n - 1) / n, and a standard error estimated from n units calls for t_{n-1}, not the normal quantile. The
    expanded percentile interval (Hesterberg 2015) takes the tails at the normal probability of
    sqrt(n / (n - 1)) · t_df instead, df = n - 1 unless given (a resampling within strata has a count and degrees
    of freedom of its own: longrope.harness.report); a fractional df is rounded down, the wider side. Non-finite
    draws (a ratio whose denominator resampled to zero) are left out; none finite, fewer than 2 units or df below 1
    (NaN included) give NaN."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    df = units - 1 if df is None else df
    if len(draws) == 0 or not (units >= 2 and df >= 1):
        return math.nan, math.nan
    tail = 1 - NormalDist().cdf(math.sqrt(units / (units - 1)) * t_quantile(math.floor(df), level))
    lo, hi = np.quantile(draws, [tail, 1 - tail])
    return float(lo), float(hi)


def gap_closed(nll_searched, nll_baseline, nll_floor, resamples: int = 2000, seed: int = 0,
               level: float = LEVEL) -> tuple[float, float, float]:
    """The share of a baseline's gap to a floor that the searched factors close,
    (ppl_baseline - ppl_searched) / (ppl_baseline - ppl_floor): 1 = down to the floor, 0 = no better than the
    baseline. Searched and baseline are paired on the same units; the floor (the model inside its own window) was
    measured on other windows, so its units are resampled on their own. The interval: expanded percentiles of
    `resamples` such draws from `seed`; NaN where a side has fewer than 2 units or the baseline is at the floor."""
    s, b, f = (np.asarray(x, dtype=float) for x in (nll_searched, nll_baseline, nll_floor))
    if s.shape != b.shape or s.ndim != 1:
        raise ValueError(f"paired NLLs must be two equally long lists of units, got {s.shape} and {b.shape}")

    def share(s_mean, b_mean, f_mean):
        return (np.exp(b_mean) - np.exp(s_mean)) / (np.exp(b_mean) - np.exp(f_mean))

    value = float(share(s.mean(), b.mean(), f.mean()))
    if min(len(s), len(f)) < 2 or not np.isfinite([s, b]).all() or not math.isfinite(value):
        return value, math.nan, math.nan
    rng = np.random.default_rng(seed)
    pairs, floors = rng.integers(0, len(s), size=(resamples, len(s))), rng.integers(0, len(f), size=(resamples, len(f)))
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = share(s[pairs].mean(axis=1), b[pairs].mean(axis=1), f[floors].mean(axis=1))
    lo, hi = expanded_percentile_interval(draws, min(len(s), len(f)), level)
    return value, lo, hi


def independent_ratio(nll_a, nll_b, level: float = LEVEL) -> tuple[float, float, float]:
    """ppl_a / ppl_b for two perplexities measured on different units (a model at two lengths: other windows), and
    the Welch t interval of the difference of their mean NLLs, exponentiated. Fewer than two units on a side, or a
    non-finite NLL, give no interval (NaN)."""
    a, b = np.asarray(nll_a, dtype=float), np.asarray(nll_b, dtype=float)
    diff = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return exp_nll(diff), math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return exp_nll(diff), exp_nll(diff), exp_nll(diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = t_quantile(max(1, math.floor(df)), level) * math.sqrt(va + vb)
    return exp_nll(diff), exp_nll(diff - half), exp_nll(diff + half)


def proportion_difference(hits_a: int, trials_a: int, hits_b: int, trials_b: int,
                          level: float = LEVEL) -> tuple[float, float, float]:
    """p_a - p_b of two proportions and Newcombe's hybrid score interval (from the two Wilson intervals; right at
    0 and 1, where the normal one is not)."""
    p, q = hits_a / trials_a, hits_b / trials_b
    (la, ua), (lb, ub) = wilson_interval(hits_a, trials_a, level), wilson_interval(hits_b, trials_b, level)
    return p - q, p - q - math.hypot(p - la, ub - q), p - q + math.hypot(ua - p, q - lb)
