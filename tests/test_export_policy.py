"""One model, one forward: the n̂ policy (export.n_hat) from the plan to the exported folder, the checks that fail
rather than pass on nothing, the switch lengths llama.cpp can follow, and the model card the folder carries."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from huggingface_hub import ModelCard

from conftest import ROOT
from longrope.data.tokenizer import byte_tokenizer
from longrope.evaluation.report import ablation
from longrope.export.card import CardFacts, model_card
from longrope.export.gguf import write_gguf
from longrope.export.hf import compare_with_stock, export_checkpoint
from longrope.export.parity import check_parity
from longrope.factors import FoundFactors
from longrope.plan import Plan, PlanError
from longrope.rope import RopeScaling

LONG = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 8.0]
WITH_N_HAT = RopeScaling("longrope", 32, 256, factors=LONG, n_hat=4)


def config_of(edit=lambda config: None) -> dict:
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    edit(config)
    return config


def searching_n_hat(config):
    config["stages"]["2048k"]["search"].pop("n_hat", None)  # the top-level list, [0, 2]
    config["search"]["n_hat"] = [0, 2]


# ---------------------------------------------------------------------------------------------
# The plan


def test_zero_holds_the_exported_stages_at_n_hat_zero_and_their_twin_searches_the_list():
    plan = Plan.load(config_of(searching_n_hat), ROOT)
    assert plan.export.n_hat == "zero" and plan.exported_stages() == ["short", "2048k"]
    runs = plan.search_runs()
    assert runs["2048k"].settings.n_hat == (0,)  # exported: every engine runs it
    assert runs["2048k_nhat"].settings.n_hat == (0, 2) and runs["2048k_nhat"].label == "longrope_nhat"
    assert runs["2048k_nhat"].is_ablation_twin and runs["2048k_nhat"].priority == 0
    assert runs["128k"].settings.n_hat == (0, 2) and runs["128k_lambda"].settings.n_hat == (0,)  # not exported
    assert "2048k_lambda" not in runs and runs["short"].settings.n_hat == (0,)


def test_keep_searches_n_hat_and_refuses_the_engine_exports_by_key():
    def keep(config):
        searching_n_hat(config)
        config["export"].update(n_hat="keep", gguf=None, parity=None)

    plan = Plan.load(config_of(keep), ROOT)
    assert plan.search_runs()["2048k"].settings.n_hat == (0, 2) and "2048k_lambda" in plan.search_runs()
    for key in ("gguf", "parity"):
        config = config_of(keep)
        config["export"][key] = config_of()["export"][key]
        with pytest.raises(PlanError, match=rf"export.{key}: export.n_hat is 'keep'.*this package's loader only"):
            Plan.load(config, ROOT)


def test_a_dynamic_switch_llama_cpp_rounds_differently_is_refused_with_the_gguf_only():
    def dynamic(config):
        config["export"]["switch"] = "dynamic"

    with pytest.raises(PlanError, match=r"export.switch: dynamic gives the short factor set up to 64 tokens "
                                        r"\(stages.short\).*multiple of 256"):
        Plan.load(config_of(dynamic), ROOT)
    Plan.load(config_of(lambda c: (dynamic(c), c["export"].update(gguf=None, parity=None))), ROOT)
    default = Plan.load(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), ROOT, require_files=False)
    assert default.export.switch == "dynamic" and default.export.gguf is not None  # its switch is 256


def test_check_lengths_default_to_l0_the_switch_and_the_target():
    plan = Plan.load(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), ROOT, require_files=False)
    assert plan.check_lengths() == [128, 256, 16384]
    assert Plan.load(config_of(), ROOT).check_lengths() == [64, 192]  # as the config names them
    with pytest.raises(PlanError, match="export.check_lengths: .* should be non-empty"):
        Plan.load(config_of(lambda c: c["export"].update(check_lengths=[])), ROOT)


# ---------------------------------------------------------------------------------------------
# The exported folder


def saved_base(model, folder):
    model.save_pretrained(folder)
    byte_tokenizer().save(folder)
    return folder


def test_zero_refuses_factors_with_n_hat_before_writing_anything(tiny_model, tmp_path):
    base = saved_base(tiny_model, tmp_path / "base")
    with pytest.raises(ValueError, match=r"export.n_hat is 'zero', but the factors keep the original RoPE for their "
                                         r"first 4 positions \(n̂ = 4\), which stock transformers, vLLM and llama.cpp"):
        export_checkpoint(base, WITH_N_HAT, "dynamic", base, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_keep_exports_for_this_package_only_and_the_stock_check_shows_the_difference(tiny_model, tmp_path):
    base = saved_base(tiny_model, tmp_path / "base")
    folder = tmp_path / "out"
    export_checkpoint(base, WITH_N_HAT, "dynamic", base, folder, n_hat="keep")
    config = json.loads((folder / "config.json").read_text())
    assert "rope_scaling" not in config and "long_mscale" not in config["rope_parameters"]  # no vLLM keys
    rows = compare_with_stock(folder, [16, 200])
    assert [row["identical"] for row in rows] == [False, False]  # stock transformers has no n̂: another model
    assert min(row["max_abs_diff_logits"] for row in rows) > 1e-3
    with pytest.raises(ValueError, match="llama.cpp cannot run; export with export.n_hat: zero"):
        write_gguf(folder, tmp_path / "model.gguf")
    assert not list(tmp_path.glob("model.gguf*"))
    with pytest.raises(ValueError, match="no lengths to compare"):
        compare_with_stock(folder, [])


def parity_row(engine="llama.cpp f16 KV", length=64, windows=2, diff=0.0):
    return {"engine": engine, "length": length, "windows": windows, "ppl_rel_diff": diff}


@pytest.mark.parametrize("rows, message", [
    ([], "compared no window"),
    ([parity_row(windows=0)], "compared no window"),
    ([parity_row(), parity_row(length=192, diff=0.006)], r"by more than export.parity.tolerance \(0.50%\): "
                                                         r"llama.cpp f16 KV at 192 \(\+0.6000%\)"),
    ([parity_row(diff=float("nan"))], "llama.cpp f16 KV at 64"),
])
def test_engine_parity_fails_on_nothing_compared_or_an_engine_off_tolerance(rows, message):
    with pytest.raises(ValueError, match=message):
        check_parity(rows, 0.005)


def test_engine_parity_within_tolerance_passes():
    check_parity([parity_row(diff=-0.004), parity_row(engine="longrope", diff=0.0)], 0.005)


# ---------------------------------------------------------------------------------------------
# The model card and Table 11


def found(stage, mode, scale, scaling):
    return FoundFactors(stage=stage, scaling=scaling, scale=scale, fitness_ppl=5.0, fitness_samples=2, evaluations=48,
                        cache_hits=0, search={"mode": mode, "fitness": "ppl", "population": 16, "generations": 4},
                        model="results/finetune/256k/model", critical_dimension=20, dtype="float32")


def card(scaling, n_hat="zero", gguf="model.gguf", parity="| engine |\n|---|\n| llama.cpp |\n"):
    check = pd.DataFrame({"length": [128, 16384], "dtype": "float32", "max_abs_diff_hidden": 0.0,
                          "max_abs_diff_logits": 0.0, "identical": True})
    facts = CardFacts(base={"made by": "pretrain", "original length (L0)": 128},
                      corpora={"train": {"source": "novels", "kind": "books"}},
                      stages=[found("short", "recovery", 2, scaling), found("2048k", "secondary", 128, scaling)],
                      switch="dynamic", n_hat=n_hat, stock_check=check, parity=parity, gguf=gguf)
    return model_card(facts, scaling)


def test_the_card_says_where_the_factors_come_from_and_what_each_engine_runs(tmp_path):
    scaling = RopeScaling("longrope", 128, 16384, factors=[1.0] * 31 + [160.0], short_factors=[1.0] * 32,
                          short_length=256)
    text = str(card(scaling))
    path = tmp_path / "README.md"
    card(scaling).save(path)
    assert ModelCard.load(path).data.library_name == "transformers"
    for expected in ("128 → 16,384 tokens", "| short | recovery | 2× |", "| 2048k | secondary | 128× |",
                     "the short set up to 256 tokens", "rounded up to a multiple of 256",
                     "| llama.cpp (`model.gguf`) |", "| 16384 | float32 | 0 | 0 | True |", "| llama.cpp |"):
        assert expected in text
    assert "for this package's loader only" not in text.lower()
    kept = str(card(RopeScaling("longrope", 128, 16384, factors=[2.0] * 32, n_hat=12), n_hat="keep", gguf=None,
                    parity=None))
    assert "For this package's loader only" in kept and "drops n̂ = 12: a different model" in kept
    assert "no GGUF written" in kept and "No cross-engine table" in kept


def test_table11_reads_the_n_hat_twin_of_an_exported_stage():
    rows = [{"study": "length", "model": "ft_256k", "method": method, "scale": 128.0, "n_hat": 0, "length": 1000,
             "ppl": ppl, "n_samples": 2, "ppl_lo": ppl - 0.1, "ppl_hi": ppl + 0.1}
            for method, ppl in (("pi", 20.0), ("longrope", 6.0), ("longrope_nhat", 5.5))]
    windows = pd.DataFrame([{**{k: r[k] for k in ("study", "model", "method", "scale", "n_hat", "length")},
                             "start": start, "nll": np.log(r["ppl"]) + 0.01 * start} for r in rows for start in (0, 1)])
    from longrope.evaluation.report import PairedWindows

    table = ablation(pd.DataFrame(rows), [128.0], PairedWindows(windows)).loc[("ft_256k", 128.0, 1000)]
    assert [table["PI"], table["λ only"], table["λ + n̂"]] == pytest.approx([20.0, 6.0, 5.5])
    assert table["ratio λ + n̂ / λ only"] == pytest.approx(5.5 / 6.0, rel=1e-3)
