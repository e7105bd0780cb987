"""longrope.tools.benchmark_scoring: both paths score the same window to the same NLL, so their times compare."""
import pytest

from longrope.model import TINY_LLAMA, tiny_llama
from longrope.tools.benchmark_scoring import measure


def test_the_project_path_and_transformers_loss_agree_inside_and_beyond_the_window(tmp_path):
    tiny_llama(**TINY_LLAMA).save_pretrained(tmp_path)
    for length in (96, 512):  # L0 = 128: the YaRN scaling is plain inside it, 4x beyond it
        stock, project = (measure(str(tmp_path), length, path, "float32", threads=1, repeats=1)
                          for path in ("stock", "project"))
        assert project["nll"] == pytest.approx(stock["nll"], rel=1e-5)
        assert stock["seconds"] > 0 and project["seconds"] > 0 and project["length"] == length
