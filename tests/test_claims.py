"""The claims table (longrope.evaluation.claims) on hand-made results whose verdicts are known: each claim holds,
fails or is not shown as its interval says, and a claim whose rows are missing says so instead of passing."""
import math

import numpy as np
import pandas as pd
import pytest

from longrope.evaluation.claims import claims_table
from longrope.evaluation.report import PairedWindows
from longrope.evaluation.stats import independent_ratio, proportion_difference

L0, SCALE, FINAL = 128, 8.0, 128.0
RNG = np.random.default_rng(0)
NOISE = RNG.normal(0, 0.05, 12)  # one difficulty per window, shared by every row scored on it


def results(rows: list[tuple]):
    """rows: (model, method, scale, length, mean NLL); every row at a length is scored on the same 12 windows."""
    tidy, windows = [], []
    for model, method, scale, length, nll in rows:
        key = {"study": "length", "model": model, "method": method, "scale": scale, "n_hat": 0, "length": length}
        units = nll + NOISE + RNG.normal(0, 0.005, len(NOISE))
        tidy.append({**key, "ppl": math.exp(units.mean()), "ppl_lo": 0.0, "ppl_hi": 0.0, "n_samples": len(units)})
        windows += [{**key, "start": i * length, "nll": v} for i, v in enumerate(units)]
    return pd.DataFrame(tidy), PairedWindows(pd.DataFrame(windows), resamples=500)


def passkey(cells: list[tuple]):
    """cells: (model, method, scale, length, hits of 40)."""
    return pd.DataFrame([{"model": m, "method": k, "scale": s, "length": n, "depth": 0.5, "accuracy": h / 40,
                          "trials": 40} for m, k, s, n, h in cells])


def good_run(final_drift=0.0, final_hits=40, yarn_hits=5, pi_hits=0, recovered=1.6):
    rows = [("base", "none", 1.0, L0, 1.6), ("base", "none", 1.0, 1024, 3.0)]
    rows += [("base", m, SCALE, 1024, 1.9) for m in ("pi", "ntk", "yarn")]
    rows += [("base", "longrope", SCALE, 1024, 1.8)]
    rows += [("ft_256k", "longrope_short", FINAL, L0, recovered), ("ft_256k", "longrope", FINAL, L0, 1.8)]
    rows += [("ft_256k", "longrope_short", FINAL, n, 1.6 + final_drift) for n in (1024, 16384)]
    cells = [("ft_256k", "longrope_short", FINAL, n, final_hits) for n in (L0, 2048)]
    cells += [("base", "none", 1.0, n, h) for n, h in ((L0, 40), (2048, 0))]
    cells += [("base", "pi", FINAL, 2048, pi_hits), ("base", "yarn", FINAL, 2048, yarn_hits)]
    ppl, pairs = results(rows)
    return claims_table(ppl, passkey(cells), pairs, L0, SCALE)


def test_every_claim_holds_on_a_run_that_shows_them():
    table = good_run()
    assert list(table.index) == ["(a)", "(b)", "(c1)", "(c2)", "(c3)", "(d)"]
    assert (table["verdict"] == "holds").all(), table
    assert table.loc["(a)", "value"] == pytest.approx(math.exp(-0.1), rel=0.01)


@pytest.mark.parametrize("change, claim, moved", [
    ({"final_drift": 0.3}, "(b)", set()),        # the final model 35 % worse at long lengths
    ({"final_hits": 4}, "(c1)", {"(c3)"}),       # it retrieves 10 %, so no better than YaRN either
    ({"pi_hits": 30}, "(c2)", set()),            # PI retrieves beyond L0
    ({"yarn_hits": 40}, "(c3)", set()),          # YaRN retrieves as well as the final model
    ({"recovered": 2.0}, "(d)", set()),          # L0 50 % worse than the base, and worse than before recovery
])
def test_a_claim_that_fails_is_shown_failing(change, claim, moved):
    table = good_run(**change)
    assert table.loc[claim, "verdict"] == ("not shown" if claim == "(c3)" else "fails")
    assert (table.drop(index=[claim, *moved])["verdict"] == "holds").all()
    assert (table.loc[list(moved), "verdict"] != "holds").all()


def test_missing_rows_are_not_measured_rather_than_held():
    ppl, pairs = results([("base", "none", 1.0, L0, 1.6)])
    table = claims_table(ppl, passkey([]).reindex(columns=["model", "method", "scale", "length", "depth", "accuracy",
                                                           "trials"]), pairs, L0, SCALE)
    assert (table["verdict"] == "not measured").all()


def test_independent_ratio_interval_covers_and_narrows():
    a, b = RNG.normal(2.0, 0.1, 50), RNG.normal(1.9, 0.1, 40)
    value, lo, hi = independent_ratio(a, b)
    assert lo < value < hi and lo < math.exp(0.1) < hi
    assert hi - lo < 0.2


def test_proportion_difference_at_the_edges():
    diff, lo, hi = proportion_difference(40, 40, 0, 40)
    assert diff == 1 and 0.8 < lo < 1 and hi == pytest.approx(1.0)
    diff, lo, hi = proportion_difference(0, 40, 0, 40)
    assert diff == 0 and lo < 0 < hi
