"""Two runs of the workflow compared measurement by measurement: for every perplexity row both result folders hold
(same study, model label, method, scale and length; n̂ too where a subject was measured at several), the second
run's perplexity over the first's on the same windows, with a seeded paired-bootstrap 95 % interval — which figures
a change of config or code moved, and by how much. Rows scored on different windows are refused (evaluate both runs
with the same evaluation settings).

    longrope-compare-runs --a before/results --b after/results [--moved-only]
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from longrope.evaluation.records import MEASUREMENT_KEYS, read_records
from longrope.evaluation.report import markdown
from longrope.evaluation.stats import paired_bootstrap_ratio


def run_windows(results: Path) -> pd.DataFrame:
    """Every scored window of a run's evaluation records (records.read_records), each measurement once."""
    windows = sorted((results / "eval").glob("*/*.windows.csv"))
    if not windows:
        raise SystemExit(f"no evaluation records (eval/*/*.windows.csv) under {results}")
    return read_records([str(w).replace(".windows.csv", ".csv") for w in windows], windows)[1]


# n̂ is a search's outcome as much as its λ: a subject whose searches found different n̂ is still one subject, so
# rows are matched without it wherever a subject has one n̂ in each run (the n̂ study keeps it as a key).
SUBJECT = [k for k in MEASUREMENT_KEYS if k != "n_hat"]


def _units(windows: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Each measurement's windows, keyed by SUBJECT + n̂ where a subject was measured at several n̂, else -1."""
    several = windows.groupby(SUBJECT, dropna=False)["n_hat"].transform("nunique") > 1
    windows = windows.assign(n_hat_key=windows["n_hat"].where(several, -1))
    return {key: group.sort_values("start") for key, group in windows.groupby(SUBJECT + ["n_hat_key"], dropna=False)}


def compare(windows_a: pd.DataFrame, windows_b: pd.DataFrame) -> pd.DataFrame:
    """One row per measurement in both runs: n̂, ppl a, ppl b and b / a with its paired interval."""
    units_a, units_b = _units(windows_a), _units(windows_b)
    table = []
    for key in sorted(units_a.keys() & units_b.keys(), key=str):
        ua, ub = units_a[key], units_b[key]
        if not np.array_equal(ua["start"].to_numpy(), ub["start"].to_numpy()):
            raise SystemExit(f"{dict(zip(SUBJECT, key))} was scored on different windows in the two runs")
        ratio = paired_bootstrap_ratio(ub["nll"].to_numpy(), ua["nll"].to_numpy())
        table.append({**dict(zip(SUBJECT, key)), "n_hat a": int(ua["n_hat"].iloc[0]),
                      "n_hat b": int(ub["n_hat"].iloc[0]), "windows": len(ua), "ppl a": float(np.exp(ua["nll"].mean())),
                      "ppl b": float(np.exp(ub["nll"].mean())),
                      **dict(zip(("ratio b/a", "ratio b/a lo", "ratio b/a hi"), ratio))})
    only = units_a.keys() ^ units_b.keys()
    if only:
        print(f"{len(only)} measurements are in one run only, e.g. {sorted(only, key=str)[:3]}")
    return pd.DataFrame(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="the first run's results folder")
    parser.add_argument("--b", type=Path, required=True, help="the second run's results folder")
    parser.add_argument("--moved-only", action="store_true", help="only rows whose interval excludes 1")
    args = parser.parse_args()
    table = compare(run_windows(args.a), run_windows(args.b))
    lower, higher = table["ratio b/a hi"] < 1, table["ratio b/a lo"] > 1
    print(f"{len(table)} measurements on identical windows; the interval of b/a excludes 1 in "
          f"{int((lower | higher).sum())}: {int(lower.sum())} lower in b, {int(higher.sum())} higher")
    shown = table[lower | higher] if args.moved_only else table
    print(markdown(shown.set_index(SUBJECT), digits=3))


if __name__ == "__main__":
    main()
