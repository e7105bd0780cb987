"""Tables and plots from tidy result frames (every number comes from the results CSVs)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


BASELINES = ("pi", "ntk", "dynamic_ntk", "yarn")


def scaling_label(method: str, scale: float) -> str:
    return method if method == "none" else f"{method} s={scale:g}"


def markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    """A plain Markdown table (index included); missing values stay blank."""
    frame = frame.reset_index()
    cells = [[("" if pd.isna(v) else f"{v:.{digits}f}" if isinstance(v, float) else str(v)) for v in row]
             for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def latex(frame: pd.DataFrame, digits: int = 2) -> str:
    """The same table as `markdown`, as a LaTeX tabular (booktabs rules)."""
    frame = frame.reset_index()
    escape = lambda v: str(v).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
    cells = [[("" if pd.isna(v) else f"{v:.{digits}f}" if isinstance(v, float) else escape(v)) for v in row]
             for row in frame.itertuples(index=False)]
    lines = [r"\begin{tabular}{" + "l" * len(frame.columns) + "}", r"\toprule",
             " & ".join(escape(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in cells]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def perplexity_by_length(tidy: pd.DataFrame, original_length: int) -> pd.DataFrame:
    """Paper Table 1 layout: the base model, one row per (method, scale), one column per length."""
    tidy = tidy[(tidy["study"] == "length") & (tidy["model"] == "base")]
    tidy = tidy.assign(row=[scaling_label(m, s) for m, s in zip(tidy["method"], tidy["scale"])])
    order = tidy.drop_duplicates("row").sort_values(["model", "scale", "method"])
    wide = tidy.pivot_table(index=["model", "row"], columns="length", values="ppl", aggfunc="first")
    wide = wide.reindex(pd.MultiIndex.from_frame(order[["model", "row"]])).rename_axis(["model", "method"])
    wide.columns = [f"{n} ({n / original_length:g}·L0)" for n in wide.columns]
    return wide


def search_vs_baselines(tidy: pd.DataFrame, scales: list[float]) -> pd.DataFrame:
    """Searched factors against the best baseline set for the same scale on the same model, at each length."""
    rows = []
    for scale in scales:
        at = tidy[(tidy["scale"] == scale) & (tidy["study"] == "length")]
        for (model, length), group in at.groupby(["model", "length"]):
            base = group[group["method"].isin(BASELINES)].sort_values("ppl")
            searched = group[group["method"] == "longrope"]
            if base.empty or searched.empty:
                continue
            best = base.iloc[0]
            rows.append({"model": model, "scale": scale, "length": length, "longrope": searched["ppl"].iloc[0],
                         "best baseline": best["method"], "its ppl": best["ppl"],
                         "ratio": searched["ppl"].iloc[0] / best["ppl"]})
    return pd.DataFrame(rows).set_index(["model", "scale", "length"]) if rows else pd.DataFrame()


def ablation(tidy: pd.DataFrame, scales: list[float]) -> pd.DataFrame:
    """Paper Table 11: PI, λ only, λ + n̂ by length, for each (model, scale) that has a λ-only search."""
    methods = {"pi": "PI", "longrope_lambda": "λ only", "longrope": "λ + n̂"}
    rows = tidy[(tidy["study"] == "length") & tidy["scale"].isin(scales) & tidy["method"].isin(methods)]
    wide = rows.pivot_table(index=["model", "scale", "length"], columns="method", values="ppl", aggfunc="first")
    ablated = rows[rows["method"] == "longrope_lambda"][["model", "scale"]].drop_duplicates()
    wide = wide[wide.index.droplevel("length").isin(list(ablated.itertuples(index=False, name=None)))]
    return wide.reindex(columns=[m for m in methods if m in wide.columns]).rename(columns=methods)


EXTENDED = {"longrope": "searched λ", "longrope_short": "searched λ + short recovery"}


def extended_models(tidy: pd.DataFrame, original_length: int, final_scale: float) -> pd.DataFrame:
    """Paper Tables 5-7 layout: the base model, PI and YaRN at the final scale on it, and every model carrying
    searched factors (fine-tuned or not), by length."""
    tidy = tidy[tidy["study"] == "length"]
    keep = ((tidy["method"] == "none") & (tidy["model"] == "base")) | tidy["method"].isin(EXTENDED) | (
        tidy["method"].isin(["pi", "yarn"]) & (tidy["scale"] == final_scale) & (tidy["model"] == "base"))
    rows = tidy[keep].assign(factors=[EXTENDED.get(m, m) for m in tidy[keep]["method"]])
    wide = rows.pivot_table(index=["model", "factors", "scale"], columns="length", values="ppl", aggfunc="first")
    wide.columns = [f"{n} ({n / original_length:g}·L0)" for n in wide.columns]
    return wide


def short_recovery(tidy: pd.DataFrame, original_length: int) -> pd.DataFrame:
    """Paper Table 10: perplexity at L0 and 2·L0 of the base model and of every extended model, the final one
    before and after its short factor set was searched; `vs base` is the ratio at L0."""
    short = extended_models(tidy[tidy["length"].isin([original_length, 2 * original_length])], original_length, 0.0)
    if short.empty:
        return short
    base = short.xs("base", level="model").xs("none", level="factors").iloc[0, 0]
    return short.assign(**{"vs base at L0": short.iloc[:, 0] / base})


def passkey_table(passkey: pd.DataFrame) -> pd.DataFrame:
    """Passkey accuracy (mean over needle depths) by model, method, scale and length (paper Fig. 4 as a table)."""
    return passkey.pivot_table(index=["model", "method", "scale"], columns="length", values="accuracy", aggfunc="mean")


def needle_table(needles: pd.DataFrame) -> pd.DataFrame:
    """RULER-style string_match_all score by model, method, task and length."""
    return needles.pivot_table(index=["model", "method", "task"], columns="length", values="score", aggfunc="mean")


def n_hat_effect(tidy: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 2: PI and dynamic NTK perplexity at each stage's target length by n̂."""
    return tidy[tidy["study"] == "n_hat"].pivot_table(index=["method", "scale", "length"], columns="n_hat", values="ppl", aggfunc="first")


def plot_perplexity(tidy: pd.DataFrame, original_length: int, path: str, dpi: int = 120) -> None:
    """Perplexity against length (log axes): one panel per scale, one line per (model, method) in the same colour
    in every panel, plain RoPE in each."""
    tidy = tidy[tidy["study"] == "length"]
    scales = sorted(s for s in tidy["scale"].unique() if s > 1) or [1.0]
    none = tidy[tidy["method"] == "none"]
    label = lambda model, method: method if model == "base" else f"{model} {method}"  # noqa: E731
    labels = list(dict.fromkeys(label(m, k) for m, k in zip(tidy["model"], tidy["method"])))
    colour = {name: plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")(i) for i, name in enumerate(labels)}
    fig, axes = plt.subplots(1, len(scales), figsize=(4.2 * len(scales), 3.6), sharey=True, squeeze=False)
    for ax, scale in zip(axes[0], scales):
        panel = pd.concat([none, tidy[(tidy["scale"] == scale) & (tidy["method"] != "none")]])
        for (model, method), rows in panel.groupby(["model", "method"], sort=False):
            rows = rows.sort_values("length")
            name = label(model, method)
            ax.plot(rows["length"], rows["ppl"], marker="o", ms=3, color=colour[name], label=name)
        ax.axvline(original_length, ls="--", c="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="evaluation length (tokens)", title=f"scale s = {scale:g}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("perplexity (held-out)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines() if not h.get_label().startswith("_")}
    fig.legend([handles[n] for n in labels if n in handles], [n for n in labels if n in handles], fontsize=8,
               loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def plot_passkey(passkey: pd.DataFrame, original_length: int, path: str, dpi: int = 120, cmap: str = "viridis") -> None:
    """One heat-map per (model, method, scale): needle depth against length, colour = accuracy."""
    subjects = list(passkey.groupby(["model", "method", "scale"], sort=False))
    fig, axes = plt.subplots(1, len(subjects), figsize=(3.2 * len(subjects), 3.2), squeeze=False, sharey=True)
    for ax, ((model, method, scale), rows) in zip(axes[0], subjects):
        grid = rows.pivot_table(index="depth", columns="length", values="accuracy")
        image = ax.imshow(grid.values, vmin=0, vmax=1, cmap=cmap, aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(grid.values):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="w" if value < 0.5 else "k")
        ax.set_xticks(range(len(grid.columns)), [f"{n / original_length:g}" for n in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{d:.0%}" for d in grid.index])
        ax.set(xlabel="length (× L0)", title=f"{model}\n{scaling_label(method, scale)}")
    axes[0][0].set_ylabel("needle depth")
    fig.colorbar(image, ax=axes[0].tolist(), label="passkey accuracy")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def plot_factors(runs: dict[str, list[float]], references: dict[str, dict[str, list[float]]], path: str,
                 dpi: int = 120) -> None:
    """λ against frequency-pair index for every search run (log y), with PI, NTK and YaRN at the same scale."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.4), squeeze=False, sharey=True)
    for ax, (run, factors) in zip(axes[0], runs.items()):
        for method, values in references[run].items():
            ax.plot(values, ls="--", lw=1, label=method)
        ax.plot(factors, marker="o", ms=3, c="k", label="searched λ")
        ax.set(yscale="log", xlabel="frequency pair i (high → low frequency)", title=run)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("rescale factor λ_i")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
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
