"""Tables and a plot from the harness's per-sample scores, every number with its 95 % interval.

A task's score is the mean of its samples' scores (0-1, shown ×100), a group's (MMLU) the unweighted mean of its
subtasks' (the Open LLM Leaderboard's averaging, not lm-eval's size-weighted one), a suite's or a length's the mean
of its tasks'. Intervals: Wilson, with the effective sample count of that mean of means (for scores in [0, 1]:
right at 0 and 1 and with few samples, where a normal interval collapses). Retention is paired: the extended model
and the base model answered the same samples, which a seeded bootstrap resamples together (the expanded percentile
interval of longrope.evaluation.stats, with the unit count and degrees of freedom of a resampling within leaves).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from longrope.evaluation.stats import expanded_percentile_interval, wilson_interval
from longrope.harness.suites import Suite

SUBJECT = ["subject", "model", "method", "scale"]


def reported(samples: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """The samples of the metric each task is reported by (the suite's, else the first it has; RULER's one per
    length) under one filter (the first)."""
    keep = []
    for (task, leaf), rows in samples.groupby(["task", "leaf"], sort=False):
        rows = rows[rows["filter"] == rows["filter"].iloc[0]]
        if not suite.lengths:
            rows = rows[rows["metric"] == (suite.metric(task) or rows["metric"].iloc[0])]
        keep.append(rows)
    return pd.concat(keep) if keep else samples.iloc[:0]


def _cell(name: str, estimate: tuple[float, float, float]) -> dict:
    return {name: 100 * estimate[0], f"{name} lo": 100 * estimate[1], f"{name} hi": 100 * estimate[2]}


def _task_groups(rows: pd.DataFrame) -> dict[str, list[np.ndarray]]:
    return {task: [leaf["score"].to_numpy() for _, leaf in task_rows.groupby("leaf", sort=False)]
            for task, task_rows in rows.groupby("task", sort=False)}


def suite_table(samples: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """Paper Table 8's layout: one row per subject, one column per task (with its few-shot count) and the average."""
    rows = []
    for key, subject in samples.groupby(SUBJECT, sort=False):
        groups = _task_groups(reported(subject, suite))
        row = dict(zip(SUBJECT, key))
        for task, shots in suite.tasks:
            row |= _cell(f"{task} ({shots}-shot)", _average_of_tasks({task: groups[task]}) if task in groups
                         else (math.nan,) * 3)
        row |= _cell("average", _average_of_tasks(groups) if groups else (math.nan,) * 3)
        rows.append(row)
    return pd.DataFrame(rows).set_index(SUBJECT)


def _average_of_tasks(groups: dict[str, list[np.ndarray]]) -> tuple[float, float, float]:
    """The mean over tasks of each task's mean over its leaves (a task or a group's subtasks), and its Wilson
    interval at the effective count 1 / Σ_t Σ_k 1 / (T² L_t² n_tk) — the count whose binomial variance equals that
    of this mean of means when all leaves share one rate (T tasks, L_t leaves of task t, n_tk samples of leaf k)."""
    means = [np.mean([g.mean() for g in leaves]) for leaves in groups.values()]
    value = float(np.mean(means))
    inverse = sum(sum(1 / len(g) for g in leaves) / len(leaves) ** 2 for leaves in groups.values())
    effective = len(groups) ** 2 / inverse
    lo, hi = wilson_interval(value * effective, effective)
    return value, lo, hi


def ruler_table(samples: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """RULER by length: each subject's average over the tasks at every length, and its effective length — the
    longest length up to which every length's average reaches the suite's threshold (0 when the first does not)."""
    rows = []
    for key, subject in samples.groupby(SUBJECT, sort=False):
        subject = reported(subject, suite)
        row, passing = dict(zip(SUBJECT, key)), True
        row["effective length"] = 0
        for length in sorted(suite.lengths):
            groups = _task_groups(subject[subject["length"] == length])
            estimate = _average_of_tasks(groups) if groups else (math.nan,) * 3
            row |= _cell(str(length), estimate)
            passing = passing and 100 * estimate[0] >= suite.threshold
            if passing:
                row["effective length"] = length
        rows.append(row)
    return pd.DataFrame(rows).set_index(SUBJECT)


def retention(samples: pd.DataFrame, suite: Suite, base: str, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Short-task retention: each subject's average over the suite's tasks divided by the base subject's, on the
    same samples, with a seeded paired-bootstrap 95 % interval (expanded percentile; samples resampled within each
    task)."""
    by_subject = {key: reported(rows, suite) for key, rows in samples.groupby(SUBJECT, sort=False)}
    base_key = next((key for key in by_subject if key[0] == base), None)
    if base_key is None:
        raise ValueError(f"retention needs the base subject '{base}' in the harness results")
    rows = []
    for key, subject in by_subject.items():
        if key == base_key:
            continue
        ratio = paired_ratio(subject, by_subject[base_key], resamples, seed)
        rows.append({**dict(zip(SUBJECT, key)), "ratio to base": ratio[0], "ratio to base lo": ratio[1],
                     "ratio to base hi": ratio[2]})
    return pd.DataFrame(rows).set_index(SUBJECT) if rows else pd.DataFrame()


def paired_ratio(a: pd.DataFrame, b: pd.DataFrame, resamples: int = 2000, seed: int = 0) -> tuple[float, float,
                                                                                                   float]:
    """(average of a's tasks) / (average of b's tasks) over the samples both answered, and its paired-bootstrap
    interval: one draw of sample indices per leaf task serves both sides; expanded percentiles (_bootstrap_counts)."""
    rng = np.random.default_rng(seed)
    task_a, task_b, sizes = {}, {}, {}
    for (task, leaf), rows in a.groupby(["task", "leaf"], sort=False):
        joined = rows.merge(b[(b["task"] == task) & (b["leaf"] == leaf)], on=["doc_id", "metric"],
                            suffixes=("_a", "_b"))
        if joined.empty:
            continue
        x, y = joined["score_a"].to_numpy(), joined["score_b"].to_numpy()
        picks = rng.integers(0, len(x), size=(resamples, len(x)))
        sizes.setdefault(task, []).append(len(x))
        for store, scores in ((task_a, x), (task_b, y)):
            store.setdefault(task, []).append((scores.mean(), scores[picks].mean(axis=1)))
    if not task_a:
        return math.nan, math.nan, math.nan

    def average(store, which):
        return np.mean([np.mean([leaf[which] for leaf in leaves], axis=0) for leaves in store.values()], axis=0)

    value = average(task_a, 0) / average(task_b, 0)
    draws = average(task_a, 1) / average(task_b, 1)
    units, df = _bootstrap_counts(sizes)
    lo, hi = expanded_percentile_interval(draws, units, df=df)
    return float(value), lo, hi


def _bootstrap_counts(sizes: dict[str, list[int]]) -> tuple[float, float]:
    """The unit count and degrees of freedom that expand the percentile interval of a mean over tasks of each
    task's mean over its leaves, resampled within each leaf (`sizes`: task -> its leaves' sample counts n_k; leaf k
    weighs w_k = 1 / (T L_t)), all samples alike. With a_k = w_k² / n_k, the mean's variance is Σ a_k σ²; resampling
    shrinks it by Σ a_k σ² / n_k, as a mean of n = Σ a_k / Σ (a_k / n_k) units would be shrunk; its standard error
    has the Welch-Satterthwaite (Σ a_k)² / Σ (a_k² / (n_k - 1)) degrees of freedom. One leaf: n_k and n_k - 1. With
    unequal leaves the two differ, and one count for both under-covers (tasks of 4 and 16 samples: 90 % at the
    effective count of the Wilson intervals, 95 % with these two). A leaf of one sample has no spread to resample:
    no interval (NaN)."""
    counts = [(1 / (len(sizes) * len(leaves)), n) for leaves in sizes.values() for n in leaves]
    if min(n for _, n in counts) < 2:
        return math.nan, math.nan
    shares = [(w * w / n, n) for w, n in counts]
    total = sum(a for a, _ in shares)
    return total / sum(a / n for a, n in shares), total**2 / sum(a * a / (n - 1) for a, n in shares)


def plot_ruler(table: pd.DataFrame, suite: Suite, original_length: int, path: str, dpi: int = 120) -> None:
    """RULER's average by length, one line per subject with its interval, the threshold and L0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted(suite.lengths)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, row in table.iterrows():
        values = np.array([row[str(n)] for n in lengths])
        lo, hi = (np.array([row[f"{n} {side}"] for n in lengths]) for side in ("lo", "hi"))
        ax.errorbar(lengths, values, yerr=[values - lo, hi - values], marker="o", capsize=3,
                    label=f"{key[0]} (effective {row['effective length']})")
    ax.axhline(suite.threshold, color="grey", linestyle=":", label=f"threshold {suite.threshold:g}")
    ax.axvline(original_length, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set(xlabel="sequence length (tokens)", ylabel="RULER average (%)", ylim=(-2, 102),
           title=f"RULER ({', '.join(task for task, _ in suite.tasks)}); 95 % intervals")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
