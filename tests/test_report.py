"""Tables from small hand-made tidy frames: every number in a table is a number of the tidy results, every
perplexity carries its interval, every comparison is paired on the windows both rows were scored on."""
import math

import numpy as np
import pandas as pd
import pytest

from longrope.evaluation.records import MEASUREMENT_KEYS, unique_measurements
from longrope.evaluation.report import (PairedWindows, ablation, extended_models, finetune_effect, latex, markdown, needle_table, passkey_table, perplexity_by_length, search_vs_baselines, short_recovery)
from longrope.evaluation.stats import gap_closed, perplexity_interval, wilson_interval

DIFFICULTY = np.array([-0.3, -0.2, -0.1, 0.0, 0.0, 0.1, 0.2, 0.3])  # shared by the rows at a length: same windows


def scored(model, method, scale, length, ppl, study="length", n_hat=0, seed=0):
    """A tidy row and its windows: NLL = log ppl + the windows' shared difficulty + a little noise of its own."""
    own = np.random.default_rng([seed, length, int(ppl * 100)]).normal(0, 0.02, len(DIFFICULTY))
    nll = math.log(ppl) + DIFFICULTY + own - own.mean()  # exactly ppl
    key = {"study": study, "model": model, "method": method, "scale": scale, "n_hat": n_hat, "length": length}
    row = {**key, **perplexity_interval(nll), "n_samples": len(nll), "tokens": len(nll) * (length - 1), "seconds": 0.1}
    return row, [{**key, "start": i * length, "nll": v} for i, v in enumerate(nll)]


MEASURED = [
    scored("base", "none", 1.0, 100, 5.0), scored("base", "none", 1.0, 200, 9.0), scored("base", "none", 1.0, 800, 30.0),
    scored("base", "pi", 8.0, 100, 20.0), scored("base", "pi", 8.0, 800, 25.0),
    scored("base", "yarn", 8.0, 100, 6.0), scored("base", "yarn", 8.0, 800, 8.0),
    scored("base", "longrope", 8.0, 100, 5.5), scored("base", "longrope", 8.0, 800, 6.0),
    scored("base", "longrope_lambda", 8.0, 800, 6.5),
    scored("ft_8x", "longrope", 8.0, 100, 5.2), scored("ft_8x", "longrope", 8.0, 200, 5.4),
    scored("ft_8x", "longrope", 8.0, 800, 5.0),
    scored("ft_8x", "longrope", 64.0, 100, 5.3), scored("ft_8x", "longrope", 64.0, 200, 5.5),
    scored("ft_8x", "longrope_short", 64.0, 100, 5.1), scored("ft_8x", "longrope_short", 64.0, 200, 5.5, seed=1),
    scored("ft_mix", "longrope_mixed", 8.0, 100, 5.05), scored("ft_mix", "longrope_mixed", 8.0, 800, 5.1),
    scored("base", "pi", 8.0, 800, 24.0, study="n_hat", n_hat=4),
]
TIDY = pd.DataFrame([row for row, _ in MEASURED])
PAIRS = PairedWindows(pd.DataFrame([w for _, windows in MEASURED for w in windows]), resamples=500, seed=0)


def tidy_row(model, method, scale, length, study="length"):
    match = TIDY[(TIDY["model"] == model) & (TIDY["method"] == method) & (TIDY["scale"] == scale)
                 & (TIDY["length"] == length) & (TIDY["study"] == study)]
    return match.to_dict("records")[0]


def test_table1_is_the_base_model_by_method_and_length_with_intervals():
    table = perplexity_by_length(TIDY, original_length=100)
    assert list(table.columns[::3]) == ["100 (1·L0)", "200 (2·L0)", "800 (8·L0)"]
    assert list(table.columns[:3]) == ["100 (1·L0)", "100 (1·L0) lo", "100 (1·L0) hi"]
    cell = table.loc[("base", "pi s=8")]
    assert cell["800 (8·L0)"] == pytest.approx(25.0)  # the n̂ study row is not mixed in
    assert cell["800 (8·L0) lo"] < 25.0 < cell["800 (8·L0) hi"]
    assert "ft_8x" not in table.index.get_level_values("model")


def test_search_vs_each_baseline_is_paired_on_the_same_windows_best_first():
    table = search_vs_baselines(TIDY, [8.0], PAIRS, original_length=100)
    assert list(table.loc[("base", 8.0, 800)].index) == ["yarn", "pi"]  # best first
    row = table.loc[("base", 8.0, 800, "yarn")]
    assert row["best"] and row["windows"] == len(DIFFICULTY)
    assert row["ratio"] == pytest.approx(6.0 / 8.0)
    # The windows' shared difficulty (±0.3 nats) cancels in the pairs: the interval is far narrower than either
    # perplexity's own, and excludes 1.
    assert row["ratio lo"] < row["ratio"] < row["ratio hi"] < 1
    assert (row["ratio hi"] - row["ratio lo"]) / row["ratio"] < 0.2 * (row["longrope hi"] - row["longrope lo"]) / 6.0
    assert table.loc[("base", 8.0, 800, "pi"), "ratio"] == pytest.approx(6.0 / 25.0)
    assert "ft_8x" not in table.index.get_level_values("model")  # no baselines on that model: no row


def test_gap_closed_is_the_share_of_the_baselines_gap_to_the_floor_at_L0():
    table = search_vs_baselines(TIDY, [8.0], PAIRS, original_length=100)
    yarn, pi = table.loc[("base", 8.0, 800, "yarn")], table.loc[("base", 8.0, 800, "pi")]
    # floor: plain RoPE at L0 = 100 is 5.0; YaRN 8.0 → searched 6.0 closes 2 of its 3
    assert yarn["gap closed"] == pytest.approx((8.0 - 6.0) / (8.0 - 5.0))
    assert pi["gap closed"] == pytest.approx((25.0 - 6.0) / (25.0 - 5.0))
    assert 0 < yarn["gap closed lo"] < yarn["gap closed"] < yarn["gap closed hi"]
    # the floor's windows are resampled on their own: the interval is wider than the paired ratio alone implies
    assert yarn["gap closed hi"] - yarn["gap closed lo"] > 0.05
    assert math.isnan(table.loc[("base", 8.0, 100, "yarn"), "gap closed"])  # inside L0 there is no gap
    assert "gap closed" in markdown(table) and "0.667 [" in markdown(table)


def test_gap_closed_interval_excludes_zero_only_when_the_search_clearly_wins():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 0.3, 8)
    floor = np.log(5.0) + rng.normal(0, 0.3, 8)
    clear = gap_closed(np.log(6.0) + difficulty, np.log(8.0) + difficulty, floor, resamples=500)
    noisy = gap_closed(np.log(7.9) + difficulty + rng.normal(0, 0.1, 8), np.log(8.0) + difficulty, floor, resamples=500)
    assert clear[1] > 0 and noisy[1] < 0 < noisy[2]


def test_a_row_compared_with_itself_is_one_with_zero_width_and_unpaired_rows_are_refused():
    row = tidy_row("base", "yarn", 8.0, 800)
    assert PAIRS.ratio(row, row) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="not scored on the same windows"):
        PAIRS.ratio(row, tidy_row("base", "none", 1.0, 200))
    with pytest.raises(KeyError, match="no per-window NLLs"):
        PAIRS.ratio(row, {**row, "method": "ntk"})


def test_ablation_and_finetune_effect_and_extended_models():
    table = ablation(TIDY, [8.0], PAIRS).loc[("base", 8.0, 800)]
    assert [table["PI"], table["λ only"], table["λ + n̂"]] == pytest.approx([25.0, 6.5, 6.0])
    assert table["ratio λ + n̂ / λ only"] == pytest.approx(6.0 / 6.5)
    finetuned = finetune_effect(TIDY, [{"model": "ft_8x", "method": "longrope", "from": "base", "scale": 8.0},
                                       {"model": "ft_mix", "method": "longrope_mixed", "from": "base", "scale": 8.0}],
                                PAIRS)
    assert list(finetuned.index) == [("ft_8x", "base", 8.0, 100), ("ft_8x", "base", 8.0, 800),
                                     ("ft_mix", "base", 8.0, 100), ("ft_mix", "base", 8.0, 800)]
    assert finetuned.loc[("ft_8x", "base", 8.0, 800), "ratio fine-tuned / not"] == pytest.approx(5.0 / 6.0)
    # a mixed-window model under its own scaling against the searched λ on the model it started from
    assert finetuned.loc[("ft_mix", "base", 8.0, 800), "ratio fine-tuned / not"] == pytest.approx(5.1 / 6.0)
    extended = extended_models(TIDY, 100, final_scale=8.0)
    assert extended.loc[("ft_8x", "searched λ", 8.0), "800 (8·L0)"] == pytest.approx(5.0)
    assert ("base", "pi", 8.0) in extended.index and ("base", "longrope_lambda", 8.0) not in extended.index


def test_short_recovery_ratios_are_paired_at_l0_and_2l0():
    recovery = short_recovery(TIDY, 100, PAIRS)
    assert list(recovery.columns[::3]) == ["100 (1·L0)", "200 (2·L0)", "ratio vs base at L0",
                                           "ratio after / before recovery at L0", "ratio after / before recovery at 2·L0"]
    final = recovery.loc[("ft_8x", "searched λ + short recovery", 64.0)]
    assert final["ratio vs base at L0"] == pytest.approx(5.1 / 5.0)
    assert final["ratio after / before recovery at L0"] == pytest.approx(5.1 / 5.3)
    assert final["ratio after / before recovery at 2·L0"] == pytest.approx(1.0)  # same ppl, other noise
    assert final["ratio after / before recovery at 2·L0 lo"] < 1 < final["ratio after / before recovery at 2·L0 hi"]
    mixed = recovery.loc[("ft_mix", "searched λ, mixed-window fine-tuned", 8.0)]  # beside the recovery, at L0
    assert mixed["ratio vs base at L0"] == pytest.approx(5.05 / 5.0)
    base = recovery.loc[("base", "none", 1.0)]
    assert [base["ratio vs base at L0"], base["ratio vs base at L0 lo"], base["ratio vs base at L0 hi"]] == [1, 1, 1]
    assert pd.isna(base["ratio after / before recovery at L0"])


def test_passkey_and_needle_tables_pool_trials_with_wilson_intervals():
    passkey = pd.DataFrame([
        {"model": "base", "method": "none", "scale": 1.0, "length": 100, "depth": d, "trials": 10, "accuracy": a}
        for d, a in [(0.0, 1.0), (0.5, 0.8), (1.0, 0.6)]])
    row = passkey_table(passkey).loc[("base", "none", 1.0)]
    assert row["100"] == pytest.approx(0.8)
    assert (row["100 lo"], row["100 hi"]) == pytest.approx(wilson_interval(24, 30))  # 24 of 30 keys
    needles = pd.DataFrame([{"model": "base", "method": "none", "scale": 1.0, "task": "niah_single", "length": 500,
                             "trials": 5, "score": 0.4, "score_lo": 0.1, "score_hi": 0.8}])
    assert needle_table(needles).loc[("base", "none", "niah_single")].tolist() == [0.4, 0.1, 0.8]


def test_markdown_and_latex_render_intervals_and_mark_ratios_that_exclude_one():
    table = perplexity_by_length(TIDY, original_length=100)
    pi = table.loc[("base", "pi s=8")]
    cells = [f"{pi[c]:.2f} [{pi[c + ' lo']:.2f}, {pi[c + ' hi']:.2f}]" for c in ("100 (1·L0)", "800 (8·L0)")]
    md, tex = markdown(table), latex(table)
    assert "| model | method | 100 (1·L0) | 200 (2·L0) | 800 (8·L0) |" in md
    assert f"| base | pi s=8 | {cells[0]} |  | {cells[1]} |" in md
    assert rf"base & pi s=8 & {cells[0]} &  & {cells[1]} \\" in tex
    assert tex.startswith(r"\begin{tabular}{lllll}") and tex.rstrip().endswith(r"\end{tabular}")
    recovery = short_recovery(TIDY, 100, PAIRS)
    md, tex = markdown(recovery), latex(recovery)
    assert "| base | none | 1.00 | " in md and "| 1.000 [1.000, 1.000] |  |  |" in md  # itself: not marked
    final = recovery.loc[("ft_8x", "searched λ + short recovery", 64.0)]
    marked = [f"{final[c]:.3f} [{final[c + ' lo']:.3f}, {final[c + ' hi']:.3f}]"
              for c in ("ratio after / before recovery at L0", "ratio after / before recovery at 2·L0")]
    assert rf"| {marked[0]}\* | {marked[1]} |" in md  # 5.1 / 5.3 excludes 1; equal perplexities do not
    assert rf"{marked[0]}$^*$ & {marked[1]} \\" in tex


def test_a_measurement_made_twice_is_kept_once_and_a_clash_is_an_error():
    row = {"study": "length", "model": "ft_128k", "method": "longrope", "scale": 16.0, "n_hat": 0, "length": 128}
    twice = pd.DataFrame([{**row, "ppl": 5.3}, {**row, "ppl": 5.3}, {**row, "length": 256, "ppl": 5.1}])
    assert len(unique_measurements(twice, MEASUREMENT_KEYS, "ppl")) == 2
    with pytest.raises(ValueError, match="different ppl values for the same study"):
        unique_measurements(pd.DataFrame([{**row, "ppl": 5.3}, {**row, "ppl": 5.4}]), MEASUREMENT_KEYS, "ppl")


LATEX_SPECIALS = "#$%&~_^\\{}"


def test_latex_escapes_every_special_character_in_header_index_and_cells():
    """LaTeX's ten specials in an index name and value, a column name and a text cell come out as text; the only
    markup left is the tabular's own (column separators, row ends) and the significance mark of a ratio whose
    interval excludes 1."""
    nasty = "a_b%c&d#e$f{g}h~i^j\\k"
    escaped = (r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
    frame = pd.DataFrame({"note " + nasty: [nasty], "ratio " + nasty: [0.5], f"ratio {nasty} lo": [0.4],
                          f"ratio {nasty} hi": [0.6]}, index=pd.Index([nasty], name="model " + nasty))
    lines = latex(frame).splitlines()
    assert lines[:2] == [r"\begin{tabular}{lll}", r"\toprule"] and lines[3] == r"\midrule"
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"] and len(lines) == 7
    header, row = (line.removesuffix(r" \\").split(" & ") for line in (lines[2], lines[4]))
    assert header == [f"model {escaped}", f"note {escaped}", f"ratio {escaped}"]
    assert row == [escaped, escaped, "0.500 [0.400, 0.600]$^*$"]
    escapes = [r"\textbackslash{}", r"\textasciitilde{}", r"\textasciicircum{}", *(rf"\{c}" for c in "#$%&_{}")]
    for cell in header + row:
        text = cell.removesuffix("$^*$")
        for escape in escapes:
            text = text.replace(escape, "")
        assert not set(text) & set(LATEX_SPECIALS), cell
