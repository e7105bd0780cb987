"""The paper's claims in miniature, one row each, read off the tidy results with their intervals and a verdict:

- (a) the searched λ beats every baseline at the first search target without fine-tuning (paper Table 1);
- (b) the final model's perplexity stays within 10 % of its L0 value at every evaluated length (Tables 5-7);
- (c) passkey retrieval (Fig. 4): (c1) the final model ≥ 90 % at every length, (c2) plain RoPE and PI ≤ 10 %
  beyond L0, (c3) YaRN below the final model;
- (d) short-context recovery (Table 10): the final model at L0 within the base model's paired interval, or better
  than before recovery.

A verdict is `holds` when the interval clears the claim's bound, `fails` when it lies wholly on the wrong side,
`not shown` when it straddles the bound and `not measured` when the rows it needs are missing.
"""
from __future__ import annotations

import math

import pandas as pd

from longrope.evaluation.report import BASELINES, PairedWindows
from longrope.evaluation.stats import independent_ratio, proportion_difference, wilson_interval

PPL_DRIFT = 1.10  # (b): within 10 % of the L0 value
RETRIEVES, COLLAPSED = 0.90, 0.10  # (c): the final model at least, plain RoPE and PI at most
COLUMNS = ["claim", "what", "subject", "value", "value lo", "value hi", "verdict"]


def _verdict(lo: float, hi: float, good_below: float | None = None, good_above: float | None = None) -> str:
    """`holds` when [lo, hi] clears the bound on the good side, `fails` when it lies wholly on the other side."""
    if math.isnan(lo) or math.isnan(hi):
        return "not shown"
    if good_below is not None:
        return "holds" if hi < good_below else "fails" if lo > good_below else "not shown"
    return "holds" if lo > good_above else "fails" if hi < good_above else "not shown"


SEVERITY = {"fails": 2, "not shown": 1, "holds": 0}


def _deciding(cells: dict, verdicts: dict, worse) -> object:
    """The cell that decides a claim over several: the worst verdict, and among those the worst value (`worse`
    orders values, worst last), so the row shows the figure its verdict rests on."""
    return max(cells, key=lambda k: (SEVERITY[verdicts[k]], worse(cells[k][0])))


def _missing(claim: str, what: str) -> dict:
    return dict(zip(COLUMNS, (claim, what, "", math.nan, math.nan, math.nan, "not measured")))


def final_model(ppl: pd.DataFrame) -> tuple[str, str, float] | None:
    """(model, method, scale) of the workflow's final model: the short-recovered factors at the largest scale, or
    without recovery the searched factors at the largest scale on the last fine-tuned model."""
    rows = ppl[(ppl["study"] == "length") & ppl["method"].isin(["longrope_short", "longrope"])]
    for method in ("longrope_short", "longrope"):
        at = rows[rows["method"] == method]
        if len(at):
            top = at[at["scale"] == at["scale"].max()].sort_values("model").iloc[-1]
            return top["model"], method, float(top["scale"])
    return None


def _rows(ppl: pd.DataFrame, model: str, method: str, scale: float) -> pd.DataFrame:
    """One subject's perplexity by length."""
    return ppl[(ppl["study"] == "length") & (ppl["model"] == model) & (ppl["method"] == method)
               & (ppl["scale"] == scale)]


def _row(ppl: pd.DataFrame, model: str, method: str, scale: float, length: int) -> dict | None:
    found = _rows(ppl, model, method, scale)
    found = found[found["length"] == length]
    return found.iloc[0].to_dict() if len(found) else None


def searched_beats_baselines(ppl, pairs: PairedWindows, original_length: int, scale: float | None) -> dict:
    what = "searched λ / best baseline at the first search target, no fine-tuning (paired ratio < 1 against each)"
    if scale is None:
        return _missing("(a)", what + ": no search on the base model")
    what = what.replace("the first search target", f"{scale:g}·L0")
    length = round(scale * original_length)
    searched = _row(ppl, "base", "longrope", scale, length)
    baselines = [row for m in BASELINES if (row := _row(ppl, "base", m, scale, length)) is not None]
    if searched is None or not baselines:
        return _missing("(a)", what)
    ratios = {b["method"]: pairs.ratio(searched, b) for b in baselines}
    verdicts = {m: _verdict(lo, hi, good_below=1.0) for m, (_, lo, hi) in ratios.items()}
    best = min(baselines, key=lambda b: b["ppl"])["method"]
    # the best baseline, unless another decides a worse verdict
    shown = max(ratios, key=lambda m: (SEVERITY[verdicts[m]], m == best, ratios[m][0]))
    return dict(zip(COLUMNS, ("(a)", what, f"vs {shown}", *ratios[shown], verdicts[shown])))


def final_stays_flat(ppl, pairs: PairedWindows, original_length: int, final) -> dict:
    what = f"final model: ppl(length) / ppl(L0) at the length that decides (≤ {PPL_DRIFT:g} at every length)"
    model, method, scale = final
    at_l0 = _row(ppl, model, method, scale, original_length)
    rows = _rows(ppl, model, method, scale)
    rows = rows[rows["length"] > original_length]
    if at_l0 is None or rows.empty:
        return _missing("(b)", what)
    l0_units = pairs.units_of(at_l0)
    ratios = {int(r["length"]): independent_ratio(pairs.units_of(r), l0_units) for r in rows.to_dict("records")}
    verdicts = {n: _verdict(lo, hi, good_below=PPL_DRIFT) for n, (_, lo, hi) in ratios.items()}
    length = _deciding(ratios, verdicts, lambda v: v)
    return dict(zip(COLUMNS, ("(b)", what, f"{model} at {length}", *ratios[length], verdicts[length])))


def _pooled(passkey: pd.DataFrame, model: str, method: str, scale: float | None) -> pd.DataFrame:
    rows = passkey[(passkey["model"] == model) & (passkey["method"] == method)]
    if scale is not None:
        rows = rows[rows["scale"] == scale]
    rows = rows.assign(hits=(rows["accuracy"] * rows["trials"]).round().astype(int))
    return rows.groupby("length")[["hits", "trials"]].sum()


def passkey_claims(passkey: pd.DataFrame, original_length: int, final, final_scale: float) -> list[dict]:
    model, method, scale = final
    rows = []
    what = f"final model: passkey accuracy at the length that decides (≥ {RETRIEVES:.0%} at every length)"
    own = _pooled(passkey, model, method, scale)
    if own.empty:
        rows.append(_missing("(c1)", what))
    else:
        cells = {n: (c.hits / c.trials, *wilson_interval(c.hits, c.trials)) for n, c in own.iterrows()}
        verdicts = {n: _verdict(lo, hi, good_above=RETRIEVES) for n, (_, lo, hi) in cells.items()}
        length = _deciding(cells, verdicts, lambda v: -v)
        rows.append(dict(zip(COLUMNS, ("(c1)", what, f"{model} at {length}", *cells[length], verdicts[length]))))
    what = f"plain RoPE and PI on the base model: passkey accuracy beyond L0, the cell that decides (≤ {COLLAPSED:.0%})"
    cells = {}
    for subject, at in (("none", None), ("pi", final_scale)):
        pooled = _pooled(passkey, "base", subject, at)
        for n, c in pooled[pooled.index > original_length].iterrows():
            cells[(subject, n)] = (c.hits / c.trials, *wilson_interval(c.hits, c.trials))
    if not cells:
        rows.append(_missing("(c2)", what))
    else:
        verdicts = {k: _verdict(lo, hi, good_below=COLLAPSED) for k, (_, lo, hi) in cells.items()}
        worst = _deciding(cells, verdicts, lambda v: v)
        rows.append(dict(zip(COLUMNS, ("(c2)", what, f"{worst[0]} at {worst[1]}", *cells[worst], verdicts[worst]))))
    what = "final model − YaRN at the final scale: passkey accuracy beyond L0, pooled (difference > 0)"
    yarn = _pooled(passkey, "base", "yarn", final_scale)
    both = own.join(yarn, suffixes=("_final", "_yarn"), how="inner")
    both = both[both.index > original_length]
    if both.empty:
        rows.append(_missing("(c3)", what))
    else:
        total = both.sum()
        diff = proportion_difference(int(total.hits_final), int(total.trials_final), int(total.hits_yarn),
                                     int(total.trials_yarn))
        rows.append(dict(zip(COLUMNS, ("(c3)", what, f"{model} vs yarn", *diff,
                                       _verdict(diff[1], diff[2], good_above=0.0)))))
    return rows


def short_recovery_holds(ppl, pairs: PairedWindows, original_length: int, final) -> dict:
    what = "final model / base at L0 (paired; holds within the interval of 1, or when recovery helped)"
    model, method, scale = final
    row, base = _row(ppl, model, method, scale, original_length), _row(ppl, "base", "none", 1.0, original_length)
    if row is None or base is None:
        return _missing("(d)", what)
    value, lo, hi = pairs.ratio(row, base)
    before = _row(ppl, model, "longrope", scale, original_length) if method == "longrope_short" else None
    helped = before is not None and pairs.ratio(row, before)[2] < 1
    verdict = "holds" if lo <= 1 or helped else "fails" if not math.isnan(lo) else "not shown"
    return dict(zip(COLUMNS, ("(d)", what, f"{model} vs base", value, lo, hi, verdict)))


def claims_table(ppl: pd.DataFrame, passkey: pd.DataFrame, pairs: PairedWindows, original_length: int,
                 first_scale: float | None) -> pd.DataFrame:
    """The claims (a)-(d) as one table (COLUMNS), `first_scale` the scale of the first search on the base model."""
    final = final_model(ppl)
    if final is None:
        rows = [_missing(c, "no final model in the results") for c in ("(b)", "(c1)", "(c2)", "(c3)", "(d)")]
    else:
        rows = [final_stays_flat(ppl, pairs, original_length, final),
                *passkey_claims(passkey, original_length, final, final[2]),
                short_recovery_holds(ppl, pairs, original_length, final)]
    rows.insert(0, searched_beats_baselines(ppl, pairs, original_length, first_scale))
    return pd.DataFrame(rows, columns=COLUMNS).set_index("claim")
