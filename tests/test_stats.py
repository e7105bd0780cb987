"""The intervals cover the true value at close to the nominal 95 % in seeded simulations."""
import math

import numpy as np
import pytest

from longrope.evaluation.stats import paired_bootstrap_ratio, perplexity_interval, t_quantile, wilson_interval

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


@pytest.mark.parametrize("windows", [3, 8, 32])
def test_paired_bootstrap_covers_the_true_ratio(windows):
    """Two scalings on the same windows: a large shared window difficulty, a small true difference of 0.05 nats
    with per-window noise. The paired interval covers exp(0.05) at close to 95 % (a little less with 8 windows;
    with 3 it is the paired t interval)."""
    rng = np.random.default_rng([3, windows])
    hits, widths = [], []
    for simulation in range(500):
        difficulty = rng.normal(1.7, 0.3, windows)
        a = difficulty + 0.05 + rng.normal(0, 0.05, windows)
        b = difficulty + rng.normal(0, 0.05, windows)
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
