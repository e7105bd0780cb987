"""Tables and plots from tidy result frames (every number comes from the results CSVs)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _label(method: str, scale: float) -> str:
    return method if method == "none" else f"{method} s={scale:g}"


def to_markdown_table(tidy: pd.DataFrame, original_length: int) -> str:
    """One row per (model, method, scale), one column per length, perplexity to two decimals."""
    tidy = tidy.assign(row=[_label(m, s) for m, s in zip(tidy["method"], tidy["scale"])])
    order = tidy.drop_duplicates("row").sort_values(["model", "scale", "method"])
    wide = tidy.pivot_table(index=["model", "row"], columns="length", values="ppl", aggfunc="first")
    wide = wide.reindex(pd.MultiIndex.from_frame(order[["model", "row"]]))
    lengths = list(wide.columns)
    head = ["model", "method"] + [f"{n} ({n / original_length:g}·L0)" for n in lengths]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, row), values in wide.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.2f}" for v in values]
        lines.append("| " + " | ".join([model, row, *cells]) + " |")
    return "\n".join(lines) + "\n"


def plot_perplexity(tidy: pd.DataFrame, original_length: int, path: str) -> None:
    """Perplexity against length (log axes): one panel per scale, one line per method, plain RoPE in each."""
    scales = sorted(s for s in tidy["scale"].unique() if s > 1) or [1.0]
    none = tidy[tidy["method"] == "none"]
    fig, axes = plt.subplots(1, len(scales), figsize=(4.2 * len(scales), 3.6), sharey=True, squeeze=False)
    for ax, scale in zip(axes[0], scales):
        panel = pd.concat([none, tidy[(tidy["scale"] == scale) & (tidy["method"] != "none")]])
        for (model, method), rows in panel.groupby(["model", "method"], sort=False):
            rows = rows.sort_values("length")
            ax.plot(rows["length"], rows["ppl"], marker="o", ms=3, label=method if model == "base" else f"{model} {method}")
        ax.axvline(original_length, ls="--", c="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="evaluation length (tokens)", title=f"scale s = {scale:g}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("perplexity (held-out)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss(log: pd.DataFrame, path: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(log["step"], log["loss"], lw=1)
    ax.set(xlabel="step", ylabel="training loss (nats/token)", yscale="log")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_convergence(history: list[dict], path: str, title: str) -> None:
    """Best and median fitness perplexity per generation of a search."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    generations = [h["generation"] for h in history]
    ax.plot(generations, [h["best"] for h in history], marker="o", ms=3, label="best")
    ax.plot(generations, [h["median"] for h in history], marker="o", ms=3, label="median")
    ax.set(xlabel="generation", ylabel="fitness perplexity", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
