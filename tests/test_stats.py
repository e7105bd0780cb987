"""The intervals cover the true value at close to the nominal 95 % in seeded simulations."""
import math

import numpy as np
import pandas as pd
import pytest

from longrope.evaluation.stats import paired_bootstrap_ratio, perplexity_interval, t_quantile, wilson_interval
from longrope.harness.report import paired_ratio

SIMULATIONS = 2000


def coverage(hits: list[bool]) -> float:
    return float(np.mean(hits))


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_t_table(df, table):
    assert t_quantile(df) == pytest.approx(table, abs=4e-3)


@pytest.mark.parametrize("p, trials", [(0.05, 30), (0.5, 10), (0.8, 30), (0.3, 100)])
def test_wilson_interval_covers_the_true_accuracy(p, trials):
    rng = np.random.default_rng([1, trials, int(p * 100)])
    hits = []
    for successes in rng.binomial(trials, p, SIMULATIONS):
        lo, hi = wilson_interval(successes, trials)
        hits.append(lo <= p <= hi)
    assert 0.92 <= coverage(hits) <= 0.99  # Wilson oscillates around 95 % with the trial count


def test_wilson_interval_stays_inside_zero_one_and_widens_with_fewer_trials():
    assert wilson_interval(0, 10)[0] == pytest.approx(0, abs=1e-12) and wilson_interval(10, 10)[1] == pytest.approx(1)
    assert np.ptp(wilson_interval(5, 10)) > np.ptp(wilson_interval(50, 100))
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)


@pytest.mark.parametrize("windows, skewed", [(4, False), (16, True), (130, True)])
def test_perplexity_interval_covers_the_true_perplexity(windows, skewed):
    """Window NLLs as a tiny model's: mean 1.7 nats, spread 0.2; skewed = gamma-distributed (a long tail of hard
    windows). The t interval is exact for normal NLLs even with 4 windows."""
    rng = np.random.default_rng([2, windows])
    true_mean = 1.7
    hits = []
    for _ in range(SIMULATIONS):
        nll = (rng.gamma(4.0, 0.1, windows) - 0.4 + true_mean) if skewed else rng.normal(true_mean, 0.2, windows)
        row = perplexity_interval(nll)
        hits.append(row["ppl_lo"] <= math.exp(true_mean) <= row["ppl_hi"])
        assert row["ppl"] == pytest.approx(math.exp(nll.mean())) and row["nll_se"] > 0
    assert 0.93 <= coverage(hits) <= 0.97


def test_perplexity_interval_needs_two_finite_windows():
    one = perplexity_interval([1.5])
    assert one["ppl"] == pytest.approx(math.exp(1.5)) and math.isnan(one["ppl_lo"]) and math.isnan(one["nll_se"])
    diverged = perplexity_interval([1.5, math.inf])
    assert diverged["ppl"] == math.inf and math.isnan(diverged["ppl_hi"])


def two_scalings_on_shared_windows(rng, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Window NLLs of two scalings: a shared window difficulty (1.7 ± 0.3 nats), a true difference of 0.05 nats,
    per-window noise of 0.05."""
    difficulty = rng.normal(1.7, 0.3, windows)
    return difficulty + 0.05 + rng.normal(0, 0.05, windows), difficulty + rng.normal(0, 0.05, windows)


@pytest.mark.parametrize("windows", [3, 8, 32])
def test_paired_bootstrap_covers_the_true_ratio(windows):
    """Two scalings on the same windows: a large shared window difficulty, a small true difference of 0.05 nats
    with per-window noise. The paired interval covers exp(0.05) at close to 95 % (a little less with 8 windows;
    with 3 it is the paired t interval)."""
    rng = np.random.default_rng([3, windows])
    hits, widths = [], []
    for simulation in range(500):
        a, b = two_scalings_on_shared_windows(rng, windows)
        ratio, lo, hi = paired_bootstrap_ratio(a, b, resamples=1000, seed=simulation)
        hits.append(lo <= math.exp(0.05) <= hi)
        unpaired = 2 * 1.96 * math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / windows)  # log-ratio, as if independent
        widths.append((math.log(hi) - math.log(lo)) / unpaired)
    assert 0.91 <= coverage(hits) <= 0.98
    assert np.median(widths) < 0.5  # the shared difficulty (0.3 nats) cancels in the pairs


def test_paired_bootstrap_of_a_scaling_with_itself_is_one_with_zero_width_and_is_seeded():
    nll = np.random.default_rng(4).normal(1.7, 0.3, 16)
    assert paired_bootstrap_ratio(nll, nll, seed=5) == (1.0, 1.0, 1.0)
    other = nll + np.random.default_rng(6).normal(0, 0.1, 16)
    assert paired_bootstrap_ratio(other, nll, seed=5) == paired_bootstrap_ratio(other, nll, seed=5)
    assert paired_bootstrap_ratio(other, nll, seed=5) != paired_bootstrap_ratio(other, nll, seed=7)
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap_ratio(nll, nll[:-1])
    assert all(math.isnan(v) for v in paired_bootstrap_ratio(np.append(nll, math.inf), np.append(nll, 1.0)))


@pytest.mark.parametrize("windows", [8, 12])
def test_paired_bootstrap_reaches_the_level_with_few_windows(windows):
    """Where resampling takes over from the t interval: the expanded percentiles cover exp(0.05) at 93.7 and 94.3 %
    with 8 and 12 windows in these simulations, where plain 2.5 / 97.5 % percentiles of the same draws cover 88.2
    and 89.9 %."""
    rng = np.random.default_rng([5, windows])
    hits = []
    for simulation in range(SIMULATIONS):
        _, lo, hi = paired_bootstrap_ratio(*two_scalings_on_shared_windows(rng, windows), resamples=1000,
                                           seed=simulation)
        hits.append(lo <= math.exp(0.05) <= hi)
    assert 0.93 <= coverage(hits) <= 0.97


def harness_scores(task: str, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"task": task, "leaf": task, "doc_id": range(len(scores)), "metric": "mc2", "score": scores})


def test_harness_retention_interval_reaches_the_level_with_few_unequal_tasks():
    """Retention of two short tasks of 4 and 16 samples (scores in [0, 1], as truthfulqa_mc2's): a sample's shared
    difficulty d ~ Beta(2, 2) times a model's own U(0.75, 1) (base) or U(0.65, 0.9) (extended), so the true ratio is
    0.775 / 0.875. Resampled within each task, the expanded percentiles cover it at 95.8 % in these simulations;
    plain 2.5 / 97.5 % percentiles of the same draws cover 83.5 %, and one count for both expansions (the Wilson
    intervals' effective count, 12.8) 89.8 %."""
    rng = np.random.default_rng(6)
    hits = []
    for simulation in range(400):
        extended, base = [], []
        for task, samples in (("short", 4), ("long", 16)):
            difficulty = rng.beta(2, 2, samples)
            base.append(harness_scores(task, difficulty * rng.uniform(0.75, 1.0, samples)))
            extended.append(harness_scores(task, difficulty * rng.uniform(0.65, 0.9, samples)))
        _, lo, hi = paired_ratio(pd.concat(extended), pd.concat(base), resamples=1000, seed=simulation)
        hits.append(lo <= 0.775 / 0.875 <= hi)
    assert 0.92 <= coverage(hits) <= 0.98  # 400 simulations: a standard error of 1.1 points
