"""The plots, from the tidy results and the tables (every number comes from the results CSVs). The report's figures
are written as PNG and, beside it, SVG. Length axes read 128, 1k, 16k; perplexity axes plain numbers; one panel per question."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from longrope.evaluation.report import BASELINES, EXTENDED, scaling_label  # noqa: E402


def tokens(n: float, _=None) -> str:
    """A length as people write it: 128, 1k, 16k, 2M."""
    for unit, size in (("M", 2**20), ("k", 2**10)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n:g}"


def _plain(value: float, _=None) -> str:
    return f"{value:.3g}"


def _length_axis(ax, lengths) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(lengths))))
    ax.xaxis.set_major_formatter(FuncFormatter(tokens))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _log_values_axis(ax) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(FuncFormatter(_plain))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def save(fig, path: str, dpi: int, svg: bool = True) -> None:
    """`path` (PNG) and, for the report's figures, the same figure as SVG beside it."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if svg:
        fig.savefig(Path(path).with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)


def _curve(ax, rows: pd.DataFrame, label: str, colour, band: bool = True) -> None:
    rows = rows.sort_values("length")
    ax.plot(rows["length"], rows["ppl"], marker="o", ms=3, color=colour, label=label)
    if band:
        ax.fill_between(rows["length"], rows["ppl_lo"], rows["ppl_hi"], color=colour, alpha=0.15, lw=0)


def plot_perplexity(tidy: pd.DataFrame, comparison: pd.DataFrame, original_length: int, path: str,
                    dpi: int = 120) -> None:
    """Three panels, three questions: (1) the baselines against plain RoPE on the base model at the final scale;
    (2) the searched λ against the best baseline at each search target, as their paired ratio with its interval
    (`comparison`: the search_vs_baselines table); (3) the stages of the chain, each extended model by length."""
    tidy = tidy[tidy["study"] == "length"]
    base = tidy[tidy["model"] == "base"]
    final = base[base["method"].isin(BASELINES)]["scale"].max()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ax = axes[0]
    panel = [("none", 1.0)] + [(m, final) for m in BASELINES]
    for i, (method, scale) in enumerate(panel):
        rows = base[(base["method"] == method) & (base["scale"] == scale)]
        if len(rows):
            _curve(ax, rows, scaling_label(method, scale), plt.get_cmap("tab10")(i))
    ax.set(title=f"baselines at s = {final:g} against plain RoPE", ylabel="perplexity (held-out, 95 % interval)")
    ax = axes[1]
    best = comparison[comparison["best"] & (comparison["model"] == "base")] if "ratio" in comparison else comparison
    for i, (scale, rows) in enumerate(best.groupby("scale") if "ratio" in best else []):
        rows = rows.sort_values("length")
        colour = plt.get_cmap("tab10")(i)
        ax.errorbar(rows["length"], rows["ratio"], yerr=[rows["ratio"] - rows["ratio lo"],
                    rows["ratio hi"] - rows["ratio"]], marker="o", ms=3, capsize=3, color=colour,
                    label=f"s = {scale:g}: searched / best baseline")
    ax.axhline(1.0, c="grey", lw=0.8)
    ax.set(title="searched λ against the best baseline (no fine-tuning)", ylabel="perplexity ratio (paired)")
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax = axes[2]
    chain = tidy[tidy["method"].isin(EXTENDED)]
    _curve(ax, base[base["method"] == "none"], "base, plain RoPE", "grey")
    for i, ((model, method, scale), rows) in enumerate(chain.groupby(["model", "method", "scale"], sort=True)):
        _curve(ax, rows, f"{model}: {EXTENDED[method]} (s = {scale:g})", plt.get_cmap("tab10")(i), band=False)
    ax.set(title="the stages of the chain")
    for ax in axes:
        _length_axis(ax, tidy["length"])
        ax.axvline(original_length, ls="--", c="grey", lw=0.8)
        ax.set_xlabel("evaluation length (tokens; dashed: L0)")
        ax.grid(alpha=0.3, which="both")
        if ax is not axes[1]:
            _log_values_axis(ax)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path, dpi)


def plot_passkey(passkey: pd.DataFrame, original_length: int, path: str, dpi: int = 120, cmap: str = "RdYlGn") -> None:
    """One heat-map per (model, method, scale): needle depth against length, red (0) to green (1), each cell
    annotated with its accuracy and Wilson 95 % interval."""
    subjects = list(passkey.groupby(["model", "method", "scale"], sort=False))
    fig, axes = plt.subplots(1, len(subjects), figsize=(2.9 * len(subjects), 3.2), squeeze=False, sharey=True)
    for ax, ((model, method, scale), rows) in zip(axes[0], subjects):
        grid, lo, hi = (rows.pivot_table(index="depth", columns="length", values=v)
                        for v in ("accuracy", "accuracy_lo", "accuracy_hi"))
        image = ax.imshow(grid.values, vmin=0, vmax=1, cmap=cmap, aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(grid.values):
            ax.text(j, i, f"{value:.0%}\n[{lo.values[i, j]:.0%}, {hi.values[i, j]:.0%}]", ha="center", va="center",
                    fontsize=6)
        ax.set_xticks(range(len(grid.columns)), [tokens(n) for n in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{d:.0%}" for d in grid.index])
        ax.set(xlabel=f"length (L0 = {tokens(original_length)})", title=f"{model}\n{scaling_label(method, scale)}")
    axes[0][0].set_ylabel("needle depth")
    fig.colorbar(image, ax=axes[0].tolist(), label="passkey accuracy")
    save(fig, path, dpi)


def plot_factors(runs: dict[str, list[float]], references: dict[str, dict[str, list[float]]], path: str,
                 critical_dimension: int, dpi: int = 120) -> None:
    """λ against frequency-pair index for every search run (log y), with PI, NTK and YaRN at the same scale and
    LongRoPE2's critical dimension (its pair d_tcd / 2) marked."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.4), squeeze=False, sharey=True)
    for ax, (run, factors) in zip(axes[0], runs.items()):
        for method, values in references[run].items():
            ax.plot(values, ls="--", lw=1, label=method)
        ax.plot(factors, marker="o", ms=3, c="k", label="searched λ")
        ax.axvline(critical_dimension / 2, c="grey", lw=1, ls=":", label=f"critical dim {critical_dimension}")
        ax.set(xlabel="frequency pair i (high → low frequency)", title=run)
        _log_values_axis(ax)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("rescale factor λ_i")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    save(fig, path, dpi)


def plot_loss(log: pd.DataFrame, path: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(log["step"], log["loss"], lw=1)
    ax.set(xlabel="step", ylabel="training loss (nats/token)")
    _log_values_axis(ax)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save(fig, path, 120, svg=False)


def plot_convergence(history: list[dict], path: str, title: str) -> None:
    """Best and median fitness perplexity per generation of a search."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    generations = [h["generation"] for h in history]
    ax.plot(generations, [h["best"] for h in history], marker="o", ms=3, label="best")
    ax.plot(generations, [h["median"] for h in history], marker="o", ms=3, label="median")
    ax.set(xlabel="generation", ylabel="fitness perplexity", title=title)
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(fig, path, 120, svg=False)
