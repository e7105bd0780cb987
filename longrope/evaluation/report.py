"""Tables from tidy result frames (every number comes from the results CSVs); the plots are in plots.py."""
from __future__ import annotations

import numpy as np
import pandas as pd

from longrope.evaluation.stats import gap_closed, paired_bootstrap_ratio, wilson_interval

BASELINES = ("pi", "ntk", "dynamic_ntk", "yarn")
KEY = ["study", "model", "method", "scale", "n_hat", "length"]  # one perplexity row of the tidy results
NO_EFFECT = {"ratio": 1.0, "gap closed": 0.0}  # comparison columns (by prefix): marked when the interval excludes it


def scaling_label(method: str, scale: float) -> str:
    return method if method == "none" else f"{method} s={scale:g}"


# ---------------------------------------------------------------------------------------------
# Rendering: a column `c` followed by `c lo` and `c hi` (its 95 % interval) is shown as one cell "v [lo, hi]";
# a column named "ratio…" is a paired comparison, marked when its interval excludes 1.


def _interval_bounds(column, columns) -> bool:
    name = str(column)
    return name.endswith((" lo", " hi")) and name[:-3] in columns


def _text_cells(frame: pd.DataFrame, digits: int, escape, mark: str) -> tuple[list[str], list[list[str]]]:
    frame = frame.reset_index()
    frame.columns = [str(c) for c in frame.columns]
    shown = [c for c in frame.columns if not _interval_bounds(c, frame.columns)]

    def cell(row, column) -> str:
        value = row[column]
        if pd.isna(value):
            return ""
        if not isinstance(value, float):
            return escape(value)
        null = next((v for prefix, v in NO_EFFECT.items() if column.startswith(prefix)), None)
        d = digits + 1 if null is not None else digits
        text = f"{value:.{d}f}"
        lo, hi = row.get(f"{column} lo", np.nan), row.get(f"{column} hi", np.nan)
        if not (pd.isna(lo) or pd.isna(hi)):
            text += f" [{lo:.{d}f}, {hi:.{d}f}]"
            if null is not None and (hi < null or lo > null):
                text += mark
        return text

    return [escape(c) for c in shown], [[cell(row, c) for c in shown] for row in frame.to_dict("records")]


def markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    """A plain Markdown table (index included); missing values stay blank."""
    header, cells = _text_cells(frame, digits, str, r"\*")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


# LaTeX's ten special characters, each as the text it stands for; str.translate replaces them in one pass, so the
# backslashes and braces an escape writes are never escaped again.
LATEX_TEXT = str.maketrans({"\\": r"\textbackslash{}", "#": r"\#", "$": r"\$", "%": r"\%", "&": r"\&", "_": r"\_",
                            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"})


def _latex_text(value) -> str:
    return str(value).translate(LATEX_TEXT)


def latex(frame: pd.DataFrame, digits: int = 2) -> str:
    """The same table as `markdown`, as a LaTeX tabular (booktabs rules). Header, index and text cells are escaped;
    the significance mark `$^*$` is added after escaping, so it stays math."""
    header, cells = _text_cells(frame, digits, _latex_text, r"$^*$")
    lines = [r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in cells]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


# ---------------------------------------------------------------------------------------------
# Tables (numbers with their intervals; CSVs keep the bounds as columns)


class PairedWindows:
    """The per-window NLLs of every perplexity row (the evaluations' *.windows.csv), to compare two rows on the
    windows they share: the ratio of their perplexities with a seeded paired-bootstrap 95 % interval."""

    def __init__(self, windows: pd.DataFrame, resamples: int = 2000, seed: int = 0):
        self.units = {key: (group["start"].to_numpy(), group["nll"].to_numpy())
                      for key, group in windows.sort_values("start").groupby(KEY, sort=False)}
        self.resamples, self.seed = resamples, seed

    def ratio(self, a: dict, b: dict) -> tuple[float, float, float]:
        """ppl(a) / ppl(b) and its interval, for two tidy perplexity rows."""
        return paired_bootstrap_ratio(*self._paired(a, b), self.resamples, self.seed)

    def gap_closed(self, searched: dict, baseline: dict, floor: dict) -> tuple[float, float, float]:
        """The share of the baseline's gap to the floor row that the searched row closes (stats.gap_closed)."""
        return gap_closed(*self._paired(searched, baseline), self._units(floor)[1], self.resamples, self.seed)

    def _paired(self, a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
        """The per-window NLLs of two rows, which must have been scored on the same windows."""
        (starts_a, nll_a), (starts_b, nll_b) = (self._units(row) for row in (a, b))
        if not np.array_equal(starts_a, starts_b):
            raise ValueError(f"rows {[a[k] for k in KEY]} and {[b[k] for k in KEY]} were not scored on the same "
                             f"windows, so they cannot be compared paired")
        return nll_a, nll_b

    def units_of(self, row: dict) -> np.ndarray:
        """The per-window NLLs of one tidy perplexity row."""
        return self._units(row)[1]

    def _units(self, row: dict):
        key = tuple(row[k] for k in KEY)
        if key not in self.units:
            raise KeyError(f"no per-window NLLs for the perplexity row {dict(zip(KEY, key))}")
        return self.units[key]


def _interval(name: str, row: dict, value: str = "ppl") -> dict:
    return {name: row[value], f"{name} lo": row[f"{value}_lo"], f"{name} hi": row[f"{value}_hi"]}


def _ratio(name: str, ratio: tuple[float, float, float]) -> dict:
    return dict(zip((name, f"{name} lo", f"{name} hi"), ratio))


def _wide(rows: pd.DataFrame, index: list[str], column: str, label=str, value: str = "ppl") -> pd.DataFrame:
    """One column per value of `column` (named by `label`), each followed by its interval's bounds."""
    if rows.empty:
        return pd.DataFrame()
    stats = rows.set_index(index + [column])[[value, f"{value}_lo", f"{value}_hi"]].unstack(column)
    wide = pd.DataFrame(index=stats.index)
    for c in stats[value].columns:
        name = label(c)
        wide[name], wide[f"{name} lo"], wide[f"{name} hi"] = (stats[v][c] for v in (value, f"{value}_lo", f"{value}_hi"))
    return wide


def _by_length(original_length: int):
    return lambda n: f"{n} ({n / original_length:g}·L0)"


def perplexity_by_length(tidy: pd.DataFrame, original_length: int) -> pd.DataFrame:
    """Paper Table 1 layout: the base model, one row per (method, scale), one column per length."""
    tidy = tidy[(tidy["study"] == "length") & (tidy["model"] == "base")]
    tidy = tidy.assign(row=[scaling_label(m, s) for m, s in zip(tidy["method"], tidy["scale"])])
    order = tidy.drop_duplicates("row").sort_values(["model", "scale", "method"])
    wide = _wide(tidy, ["model", "row"], "length", _by_length(original_length))
    return wide.reindex(pd.MultiIndex.from_frame(order[["model", "row"]])).rename_axis(["model", "method"])


def search_vs_baselines(tidy: pd.DataFrame, scales: list[float], pairs: PairedWindows,
                        original_length: int) -> pd.DataFrame:
    """Searched factors against every baseline set for the same scale on the same model, at each length, best
    baseline first; ratio < 1: the search wins. Beyond L0, also the share of each baseline's gap to the floor that
    the search closes: the floor is the same model with plain RoPE at L0, inside its window, which no factor set
    reaches without fine-tuning unless the longer context itself helps."""
    rows = []
    for scale in scales:
        at = tidy[(tidy["scale"] == scale) & (tidy["study"] == "length")]
        for (model, length), group in at.groupby(["model", "length"]):
            baselines = group[group["method"].isin(BASELINES)].sort_values("ppl").to_dict("records")
            searched = group[group["method"] == "longrope"].to_dict("records")
            if not baselines or not searched:
                continue
            floor = tidy[(tidy["study"] == "length") & (tidy["model"] == model) & (tidy["method"] == "none")
                         & (tidy["length"] == original_length)].to_dict("records")
            for rank, baseline in enumerate(baselines):
                gap = (pairs.gap_closed(searched[0], baseline, floor[0]) if floor and length > original_length
                       else (np.nan,) * 3)
                rows.append({"model": model, "scale": scale, "length": length, "baseline": baseline["method"],
                             "best": rank == 0, "windows": searched[0]["n_samples"],
                             **_interval("longrope", searched[0]), **_interval("its ppl", baseline),
                             **_ratio("ratio", pairs.ratio(searched[0], baseline)), **_ratio("gap closed", gap)})
    return pd.DataFrame(rows).set_index(["model", "scale", "length", "baseline"]) if rows else pd.DataFrame()


def ablation(tidy: pd.DataFrame, scales: list[float], pairs: PairedWindows) -> pd.DataFrame:
    """Paper Table 11: PI, λ only, λ + n̂ by length, for each (model, scale) that has an ablation twin, and
    ppl(λ + n̂) / ppl(λ only) on the same windows. The twin is the λ-only search beside a stage that searched n̂
    (longrope_lambda), or the λ + n̂ search beside an exported stage held at n̂ = 0 (longrope_nhat)."""
    twins = {"longrope_lambda": ("longrope_lambda", "longrope"), "longrope_nhat": ("longrope", "longrope_nhat")}
    methods = {"pi", "longrope", *twins}
    tidy = tidy[(tidy["study"] == "length") & tidy["scale"].isin(scales) & tidy["method"].isin(methods)]
    rows = []
    for (model, scale, length), group in tidy.groupby(["model", "scale", "length"]):
        found = {r["method"]: r for r in group.to_dict("records")}
        twin = next((twins[method] for method in twins if method in found), None)
        if twin is None:
            continue
        row = {"model": model, "scale": scale, "length": length}
        for method, name in zip(("pi", *twin), ("PI", "λ only", "λ + n̂")):
            row.update(_interval(name, found[method]) if method in found else {})
        if all(method in found for method in twin):
            row.update(_ratio("ratio λ + n̂ / λ only", pairs.ratio(found[twin[1]], found[twin[0]])))
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "scale", "length"]) if rows else pd.DataFrame()


EXTENDED = {"longrope": "searched λ", "longrope_short": "searched λ + short recovery",
            "longrope_mixed": "searched λ, mixed-window fine-tuned"}


def _extended_rows(tidy: pd.DataFrame, final_scale: float) -> pd.DataFrame:
    """The base model, PI and YaRN at the final scale on it, and every model carrying searched factors."""
    tidy = tidy[tidy["study"] == "length"]
    keep = ((tidy["method"] == "none") & (tidy["model"] == "base")) | tidy["method"].isin(EXTENDED) | (
        tidy["method"].isin(["pi", "yarn"]) & (tidy["scale"] == final_scale) & (tidy["model"] == "base"))
    return tidy[keep].assign(factors=[EXTENDED.get(m, m) for m in tidy[keep]["method"]])


def extended_models(tidy: pd.DataFrame, original_length: int, final_scale: float) -> pd.DataFrame:
    """Paper Tables 5-7 layout: the base model, PI and YaRN at the final scale on it, and every model carrying
    searched factors (fine-tuned or not), by length."""
    return _wide(_extended_rows(tidy, final_scale), ["model", "factors", "scale"], "length", _by_length(original_length))


def finetune_effect(tidy: pd.DataFrame, finetuned: list[dict], pairs: PairedWindows) -> pd.DataFrame:
    """Fine-tuned vs not: each fine-tuned model under the scaling it was trained with against the model its factors
    were searched on, with those factors (`finetuned`: model, method, from, scale), by length; ratio < 1:
    fine-tuning helps."""
    tidy = tidy[tidy["study"] == "length"]
    rows = []
    for stage in finetuned:
        at = tidy[tidy["scale"] == stage["scale"]]
        after = {r["length"]: r for r in at[(at["model"] == stage["model"]) & (at["method"] == stage["method"])]
                 .to_dict("records")}
        before = {r["length"]: r for r in at[(at["model"] == stage["from"]) & (at["method"] == "longrope")]
                  .to_dict("records")}
        for length in sorted(after.keys() & before.keys()):
            rows.append({"model": stage["model"], "from": stage["from"], "scale": stage["scale"], "length": length,
                         **_interval("not fine-tuned", before[length]), **_interval("fine-tuned", after[length]),
                         **_ratio("ratio fine-tuned / not", pairs.ratio(after[length], before[length]))})
    return pd.DataFrame(rows).set_index(["model", "from", "scale", "length"]) if rows else pd.DataFrame()


def short_recovery(tidy: pd.DataFrame, original_length: int, pairs: PairedWindows) -> pd.DataFrame:
    """Paper Table 10: perplexity at L0 and 2·L0 of the base model and of every extended model, with each one's
    ratio to the base model at L0, and for the final model the ratio after / before its short factor set was
    searched, at L0 and 2·L0 (< 1: recovery restores short-context quality)."""
    lengths = {"L0": original_length, "2·L0": 2 * original_length}
    rows = _extended_rows(tidy[tidy["length"].isin(lengths.values())], final_scale=0.0)
    if rows.empty:
        return pd.DataFrame()
    found = {(r["model"], r["method"], r["scale"], r["length"]): r for r in rows.to_dict("records")}
    base = found[("base", "none", 1.0, original_length)]
    ratios = {}
    for (model, method, scale, length), row in found.items():
        name = (model, EXTENDED.get(method, method), scale)
        if length == original_length:
            ratios.setdefault(name, {}).update(_ratio("ratio vs base at L0", pairs.ratio(row, base)))
        before = found.get((model, "longrope", scale, length))
        if method == "longrope_short" and before is not None:
            at = next(k for k, n in lengths.items() if n == length)
            ratios.setdefault(name, {}).update(_ratio(f"ratio after / before recovery at {at}", pairs.ratio(row, before)))
    wide = _wide(rows, ["model", "factors", "scale"], "length", _by_length(original_length))
    names = ["ratio vs base at L0", *(f"ratio after / before recovery at {at}" for at in lengths)]
    columns = [c for name in names for c in (name, f"{name} lo", f"{name} hi")]
    ratios = pd.DataFrame.from_dict(ratios, orient="index")
    return wide.join(ratios.reindex(columns=[c for c in columns if c in ratios]).rename_axis(wide.index.names))


def passkey_table(passkey: pd.DataFrame) -> pd.DataFrame:
    """Passkey accuracy over every trial at a length (all needle depths pooled), with its Wilson interval, by
    model, method, scale and length (paper Fig. 4 as a table)."""
    pooled = passkey.assign(hits=passkey["accuracy"] * passkey["trials"]).groupby(
        ["model", "method", "scale", "length"], as_index=False, sort=False)[["hits", "trials"]].sum()
    bounds = [wilson_interval(round(h), t) for h, t in zip(pooled["hits"], pooled["trials"])]
    pooled = pooled.assign(accuracy=pooled["hits"] / pooled["trials"], accuracy_lo=[lo for lo, _ in bounds],
                           accuracy_hi=[hi for _, hi in bounds])
    return _wide(pooled, ["model", "method", "scale"], "length", value="accuracy")


def needle_table(needles: pd.DataFrame) -> pd.DataFrame:
    """RULER-style string_match_all score with its (conservative) Wilson interval, by model, method, task and length."""
    return _wide(needles, ["model", "method", "task"], "length", value="score")


def n_hat_effect(tidy: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 2: PI and dynamic NTK perplexity at each stage's target length by n̂."""
    return _wide(tidy[tidy["study"] == "n_hat"], ["method", "scale", "length"], "n_hat")
