"""longrope.tools.compare_runs: two runs' records paired window by window."""
import numpy as np
import pytest

from longrope.evaluation.perplexity import Perplexity
from longrope.evaluation.records import PerplexityRecords
from longrope.tools.compare_runs import compare, run_windows

KEY = {"study": "length", "model": "base", "method": "yarn", "scale": 8.0, "n_hat": 0, "length": 1024}


def write_run(folder, nll, starts):
    records = PerplexityRecords()
    records.add(KEY, Perplexity(np.asarray(nll), len(nll) * 1023), starts, 1.0)
    (folder / "eval" / "base").mkdir(parents=True)
    records.save(folder / "eval" / "base" / "yarn.csv", folder / "eval" / "base" / "yarn.windows.csv")
    return folder


def test_the_ratio_pairs_windows_and_marks_a_shift_shared_by_all_windows(tmp_path):
    nll = np.random.default_rng(0).normal(2.0, 0.3, 12)  # windows differ far more than the runs do
    a = write_run(tmp_path / "a", nll, np.arange(12) * 2048)
    b = write_run(tmp_path / "b", nll - 0.01, np.arange(12) * 2048)
    row = compare(run_windows(a), run_windows(b)).iloc[0]
    assert row["ratio b/a"] == pytest.approx(np.exp(-0.01))
    assert row["ratio b/a hi"] < 1  # paired: the windows' spread cancels, a 1 % shift is resolved
    assert row["ppl a"] == pytest.approx(np.exp(nll.mean()))


def test_rows_on_other_windows_are_refused(tmp_path):
    a = write_run(tmp_path / "a", [2.0, 2.1, 2.2], [0, 2048, 4096])
    b = write_run(tmp_path / "b", [2.0, 2.1, 2.2], [0, 2048, 6144])
    with pytest.raises(SystemExit, match="different windows"):
        compare(run_windows(a), run_windows(b))
