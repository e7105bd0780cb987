"""Tables from small hand-made tidy frames: every number in a table is a number of the tidy results."""
import pandas as pd
import pytest

from longrope.report import (ablation, extended_models, latex, markdown, needle_table, passkey_table,
                             perplexity_by_length, search_vs_baselines, short_recovery)


def row(model, method, scale, length, ppl, study="length", n_hat=0):
    return {"study": study, "model": model, "method": method, "scale": scale, "n_hat": n_hat, "length": length,
            "ppl": ppl, "n_samples": 1, "tokens": length, "seconds": 0.1}


TIDY = pd.DataFrame([
    row("base", "none", 1.0, 100, 5.0), row("base", "none", 1.0, 200, 9.0), row("base", "none", 1.0, 800, 30.0),
    row("base", "pi", 8.0, 100, 20.0), row("base", "pi", 8.0, 800, 25.0),
    row("base", "yarn", 8.0, 100, 6.0), row("base", "yarn", 8.0, 800, 8.0),
    row("base", "longrope", 8.0, 100, 5.5), row("base", "longrope", 8.0, 800, 6.0),
    row("base", "longrope_lambda", 8.0, 800, 6.5),
    row("ft_8x", "longrope", 8.0, 100, 5.2), row("ft_8x", "longrope", 8.0, 200, 5.4), row("ft_8x", "longrope", 8.0, 800, 5.0),
    row("ft_8x", "longrope_short", 64.0, 100, 5.1), row("ft_8x", "longrope_short", 64.0, 200, 5.3),
    row("base", "pi", 8.0, 800, 24.0, study="n_hat", n_hat=4),
])


def test_table1_is_the_base_model_by_method_and_length():
    table = perplexity_by_length(TIDY, original_length=100)
    assert list(table.columns) == ["100 (1·L0)", "200 (2·L0)", "800 (8·L0)"]
    assert table.loc[("base", "pi s=8"), "800 (8·L0)"] == 25.0  # the n̂ study row is not mixed in
    assert "ft_8x" not in table.index.get_level_values("model")


def test_search_vs_best_baseline_on_the_same_model():
    table = search_vs_baselines(TIDY, [8.0])
    assert table.loc[("base", 8.0, 800), "best baseline"] == "yarn"
    assert table.loc[("base", 8.0, 800), "ratio"] == pytest.approx(6.0 / 8.0)
    assert "ft_8x" not in table.index.get_level_values("model")  # no baselines on that model: no row


def test_ablation_and_extended_models_and_short_recovery():
    assert ablation(TIDY, [8.0]).loc[("base", 8.0, 800)].tolist() == [25.0, 6.5, 6.0]
    extended = extended_models(TIDY, 100, final_scale=8.0)
    assert extended.loc[("ft_8x", "searched λ", 8.0), "800 (8·L0)"] == 5.0
    assert ("base", "pi", 8.0) in extended.index and ("base", "longrope_lambda", 8.0) not in extended.index
    recovery = short_recovery(TIDY, 100)
    assert recovery.loc[("ft_8x", "searched λ + short recovery", 64.0), "vs base at L0"] == pytest.approx(5.1 / 5.0)
    assert list(recovery.columns) == ["100 (1·L0)", "200 (2·L0)", "vs base at L0"]


def test_passkey_and_needle_tables_average_over_depths_and_trials():
    passkey = pd.DataFrame([
        {"model": "base", "method": "none", "scale": 1.0, "length": 100, "depth": d, "trials": 10, "accuracy": a}
        for d, a in [(0.0, 1.0), (0.5, 0.8), (1.0, 0.6)]])
    assert passkey_table(passkey).loc[("base", "none", 1.0), 100] == pytest.approx(0.8)
    needles = pd.DataFrame([{"model": "base", "method": "none", "scale": 1.0, "task": "niah_single", "length": 500,
                             "trials": 5, "score": 0.4}])
    assert needle_table(needles).loc[("base", "none", "niah_single"), 500] == 0.4


def test_markdown_and_latex_render_the_same_cells():
    table = perplexity_by_length(TIDY, original_length=100)
    md, tex = markdown(table), latex(table)
    assert "| base | pi s=8 | 20.00 |  | 25.00 |" in md
    assert r"base & pi s=8 & 20.00 &  & 25.00 \\" in tex
    assert tex.startswith(r"\begin{tabular}{lllll}") and tex.rstrip().endswith(r"\end{tabular}")
