"""The Snakemake workflow end to end on config/test.yaml, plus config errors caught before any job runs."""
import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, snakemake_cmd
from longrope.rope import critical_dimension
from longrope.search.engine import generation_records


def run(*args, cwd):
    return subprocess.run(snakemake_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=900)


def scheduled(dry_run) -> set[str]:
    """Rule names in a dry run's job-stats table."""
    assert dry_run.returncode == 0, dry_run.stderr[-2000:]
    text = dry_run.stdout + dry_run.stderr
    if "Nothing to be done" in text:
        return set()
    table = text.split("Job stats:")[1].split("total")[0].splitlines()[3:]
    return {line.split()[0] for line in table if line.strip()}


def write_config(tmp_path, edit):
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # stage order is the recipe order
    return path


@pytest.mark.integration
def test_test_config_runs_end_to_end(test_config_run):
    tmp_path = test_config_run
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    lengths = config["evaluation"]["lengths"]
    l0 = config["base_model"]["original_length"]
    scales = {float(s["scale"]) for s in config["stages"].values()}

    tidy = pd.read_csv(tmp_path / "results" / "tables" / "perplexity.csv")
    assert {"study", "model", "method", "scale", "n_hat", "length", "ppl", "n_samples", "tokens", "nll_mean", "nll_se",
            "ppl_lo", "ppl_hi"} <= set(tidy.columns)
    assert ((tidy["ppl_lo"] < tidy["ppl"]) & (tidy["ppl"] < tidy["ppl_hi"])).all()
    evaluation = config["evaluation"]  # enough scored tokens, or as many windows as allowed
    assert ((tidy["tokens"] >= evaluation["tokens_per_length"]) | (tidy["n_samples"] == evaluation["max_samples"])).all()
    assert (tidy["n_samples"] >= evaluation["min_samples"]).all()
    # Every row's windows are kept, and at a length every model and scaling was scored on the same windows.
    windows = pd.read_csv(tmp_path / "results" / "tables" / "perplexity_windows.csv")
    key = ["study", "model", "method", "scale", "n_hat", "length"]
    per_row = windows.groupby(key).agg(n=("nll", "size"), window_ppl=("nll", lambda nll: np.exp(nll.mean())))
    joined = tidy.set_index(key).join(per_row)
    assert (joined["n"] == joined["n_samples"]).all() and np.allclose(joined["window_ppl"], joined["ppl"])
    assert (windows.groupby("length")["start"].nunique() == tidy.groupby("length")["n_samples"].max()).all()
    extended = {"longrope", "longrope_lambda", "longrope_nhat", "longrope_short", "longrope_mixed"}
    assert set(tidy["method"]) == set(config["evaluation"]["methods"]) | extended
    study = tidy[tidy["study"] == "n_hat"]  # paper Table 2: PI and dynamic NTK by n̂ at each plain search target
    plain = {k: v for k, v in config["stages"].items() if v.get("search", {"mode": ""}).get("mode", "plain") == "plain"}
    assert len(study) == 2 * len(config["evaluation"]["n_hat_study"]) * len(plain)
    assert set(study["length"]) == {v["scale"] * l0 for v in plain.values()}
    tidy = tidy[tidy["study"] == "length"]
    assert (tidy["ppl"] > 1).all() and tidy["ppl"].notna().all()
    assert sorted(tidy[tidy["method"] == "none"]["length"]) == sorted(lengths)
    for method in ("pi", "ntk", "dynamic_ntk", "yarn"):
        rows = tidy[tidy["method"] == method]
        assert set(rows["scale"]) == scales
        beyond = config["evaluation"]["beyond_target"]
        assert all(length <= beyond * scale * l0 for scale, length in zip(rows["scale"], rows["length"]))
    # The scalings really reach the model: at 4·L0 the methods do not all score the same.
    baselines = tidy[~tidy["method"].str.startswith("longrope")]
    at = baselines[(baselines["length"] == 4 * l0) & ((baselines["scale"] == 4.0) | (baselines["method"] == "none"))]
    assert len(at) == 5 and at["ppl"].nunique() == 5

    head_dim = config["pretrain"]["model"]["hidden_size"] // config["pretrain"]["model"]["num_heads"]
    for stage, spec in config["stages"].items():
        if "search" not in spec:
            continue
        out = tmp_path / "results" / "search" / stage
        factors = np.loadtxt(out / "factors.csv")  # the official one-value-per-line format
        assert factors.shape == (head_dim // 2,) and (np.diff(factors) >= 0).all() and factors.min() >= 1
        found = json.loads((out / "factors.json").read_text())
        recovery = spec["search"].get("mode") == "recovery"
        searched_set = found["scaling"]["short_factors" if recovery else "factors"]
        assert searched_set == pytest.approx(factors.tolist())
        assert found["scale"] == spec["scale"] and found["target_length"] == spec["scale"] * l0
        assert found["scaling"]["n_hat"] in config["search"]["n_hat"]
        assert found["model"].endswith(f"finetune/{spec['search']['model']}/model" if "model" in spec["search"]
                                       else "base/model")
        lines = (out / "search_log.jsonl").read_text().splitlines()
        records = generation_records(out / "search_log.jsonl")
        assert len(records) == config["search"]["generations"] + 1  # generation 0…T
        assert found["window_evaluations"] == records[-1]["window_evaluations"]
        halved = spec["scale"] > config["search"]["halve_above_scale"]
        population = config["search"]["population"] // (2 if halved else 1)
        assert json.loads(lines[0])["config"]["population"] == population
        assert (out / "convergence.png").stat().st_size > 10_000
        settings = {**config["search"], **spec["search"]}  # fitness, multi-fidelity rungs, critical dimension
        assert found["search"]["fitness"] == settings.get("fitness", "ppl")
        rungs = {entry["windows"] for record in records for entry in record["evaluated"]}
        assert rungs == {*settings.get("fidelity", []), None}
        assert found["critical_dimension"] == critical_dimension(head_dim, config["pretrain"]["model"]["rope_theta"], l0)
        model = f"ft_{spec['search']['model']}" if "model" in spec["search"] else "base"
        searched = tidy[tidy["method"].isin(["longrope", "longrope_short"]) & (tidy["model"] == model)
                        & (tidy["scale"] == found["scaling"]["target_length"] / l0)]
        assert searched["length"].max() == min(max(lengths), beyond * found["scaling"]["target_length"])
        twin = tmp_path / "results" / "search" / f"{stage}_lambda" / "factors.json"  # λ-only ablation twin
        exported = stage in ("2048k", "short")  # export.n_hat: zero holds them at n̂ = 0 (their twin is _nhat)
        assert twin.is_file() == ({**config["search"], **spec["search"]}["n_hat"] != [0] and not exported)
        if spec["search"].get("mode") == "secondary":  # λ_ft ⊙ λ₂: never below the carried factors
            carried = np.loadtxt(tmp_path / "results" / "search" / spec["search"]["base_stage"] / "factors.csv")
            assert (factors >= carried - 1e-9).all()
        if recovery:  # the short set under a reduced ceiling, paired with base_stage's long set
            assert factors.max() <= spec["search"]["ceiling"]
            earlier = json.loads((out.parent / spec["search"]["base_stage"] / "factors.json").read_text())
            assert found["scaling"]["factors"] == earlier["scaling"]["factors"]
            assert found["scaling"]["short_length"] == spec["scale"] * l0

    for stage, spec in config["stages"].items():  # fine-tuned models: trained, saved with their scaling, evaluated
        if "finetune" not in spec:
            continue
        settings = {**config["finetune"], **spec["finetune"]}
        out = tmp_path / "results" / "finetune" / stage
        loss = pd.read_csv(out / "loss.csv")
        assert list(loss["step"]) == list(range(1, settings["steps"] + 1)) and loss["loss"].notna().all()
        scaling = json.loads((out / "model" / "longrope_scaling.json").read_text())
        stage_factors = json.loads((tmp_path / "results" / "search" / stage / "factors.json").read_text())["scaling"]
        mixed = settings.get("mixed_window")  # trained, saved and evaluated with a short set of ones up to L0
        ones = {"short_factors": [1.0] * (head_dim // 2), "short_length": l0} if mixed else {}
        assert scaling == {**stage_factors, **ones}
        assert json.loads((out / "model" / "config.json").read_text())["rope_parameters"]["rope_type"] == "longrope"
        backend = "DeepSpeedBackend" if settings.get("deepspeed") else "TorchBackend"
        assert f"backend: {backend}" in (tmp_path / "logs" / f"finetune_{stage}.log").read_text()
        rows = tidy[(tidy["model"] == f"ft_{stage}") & (tidy["scale"] == spec["scale"])
                    & (tidy["method"] == ("longrope_mixed" if mixed else "longrope"))]
        assert rows["length"].max() == min(max(lengths), beyond * spec["scale"] * l0)
        assert (tmp_path / "results" / "plots" / f"finetune_{stage}_loss.png").stat().st_size > 10_000
        assert not (tmp_path / "results" / "finetune" / f"{stage}.work").exists()

    # The exported model: stock transformers, no custom code, gives our logits below and above the switch length.
    from transformers import AutoModelForCausalLM

    from longrope.model import load_model
    from longrope.patching import apply_rope_scaling
    from longrope.rope import RopeScaling

    from longrope.export.hf import switched_scaling

    final = json.loads((tmp_path / "results" / "search" / config["export"]["stage"] / "factors.json").read_text())
    searched = RopeScaling.from_dict(final["scaling"])
    assert searched.n_hat == 0 and searched.short_factors is not None
    scaling = switched_scaling(searched, config["export"]["switch"])  # the set every engine gets
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / "results" / "export" / "model", local_files_only=True)
    ours = apply_rope_scaling(load_model(tmp_path / final["model"]), scaling)
    for length in (scaling.switch_length, 3 * scaling.switch_length):
        ids = torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            assert torch.equal(stock(ids).logits, ours(ids).logits)
    check = pd.read_csv(tmp_path / "results" / "export" / "stock_check.csv")  # the export's own check, same lengths
    assert check["length"].tolist() == config["export"]["check_lengths"] and check["identical"].all()
    rope = json.loads((tmp_path / "results" / "export" / "model" / "config.json").read_text())["rope_parameters"]
    assert rope["short_mscale"] == rope["long_mscale"] == rope["attention_factor"]  # what vLLM reads
    # …and the GGUF, computed from the file alone as llama.cpp's Llama graph does, gives the same logits
    from test_export_gguf import llama_cpp_logits

    for length in (scaling.switch_length, 3 * scaling.switch_length):
        ids = torch.randint(0, 256, (length,), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            expected = stock(ids[None]).logits[0].double()
        gguf_logits = llama_cpp_logits(tmp_path / "results" / "export" / "model.gguf", ids, n_ctx=length)
        assert (gguf_logits - expected).abs().max() < 1e-3
    # …and the parity table ran llama.cpp itself on the held-out windows, beside this package's loader
    parity = pd.read_csv(tmp_path / "results" / "tables" / "engine_parity.csv")
    spec = config["export"]["parity"]
    assert sorted(set(parity["engine"])) == sorted(["longrope", *(f"llama.cpp {kv} KV" for kv in spec["kv_cache"])])
    assert sorted(set(parity["length"])) == sorted(spec["lengths"]) and (parity["windows"] == spec["windows"]).all()
    assert (parity["max_abs_logit_diff"] < 0.1).all() and (parity["top-1 agreement %"] >= 99).all()
    # …and the folder users ship carries the checkpoint and its model card
    card = (tmp_path / "results" / "export" / "model" / "README.md").read_text()
    assert "| short | recovery | 2× |" in card and "| 2048k | secondary | 8× |" in card
    assert "llama.cpp (`model.gguf`)" in card and "| longrope | 64 |" in card  # the parity table
    # export.n_hat: zero searched 2048k with n̂ = 0 and its twin with the n̂ list: Table 11 at 2048k's scale
    held, twin = (json.loads((tmp_path / "results" / "search" / run / "factors.json").read_text())
                  for run in ("2048k", "2048k_nhat"))
    assert held["search"]["n_hat"] == [0] and twin["search"]["n_hat"] == config["search"]["n_hat"]
    table11 = pd.read_csv(tmp_path / "results" / "tables" / "table11_ablation.csv")
    assert not table11[(table11["model"] == "ft_256k") & (table11["scale"] == 8.0)]["ratio λ + n̂ / λ only"].isna().any()
    assert len(table11[(table11["model"] == "ft_256k") & (table11["scale"] == 8.0)]) > 0
    # …and its tokenizer folder opens in stock transformers and encodes as ours
    from transformers import AutoTokenizer

    from longrope.data.tokenizer import load_tokenizer

    stock_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "results" / "export" / "model", local_files_only=True)
    ours_tokenizer = load_tokenizer(tmp_path / "results" / "data" / "tokenizer")
    text = "Full fathom five thy father lies"
    assert stock_tokenizer.encode(text, add_special_tokens=False) == ours_tokenizer.encode(text)

    tables = tmp_path / "results" / "tables"
    for name in ("table1_perplexity", "search_vs_baselines", "table2_n_hat", "table5_extended_models",
                 "finetune_effect", "table10_short_recovery", "table11_ablation", "passkey_accuracy", "needle_scores"):
        assert {(tables / f"{name}.{ext}").stat().st_size > 50 for ext in ("csv", "md", "tex")} == {True}
        assert (tables / f"{name}.tex").read_text().count(r"\begin{tabular}") == 1
    assert "| model | scale | length | baseline | best | windows | longrope | its ppl | ratio | gap closed |" in (
        tables / "search_vs_baselines.md").read_text()
    assert "| model | scale | length | PI | λ only | λ + n̂ | ratio λ + n̂ / λ only |" in (
        tables / "table11_ablation.md").read_text()
    assert "| model | from | scale | length | not fine-tuned | fine-tuned | ratio fine-tuned / not |" in (
        tables / "finetune_effect.md").read_text()
    assert "| method | scale | length | 0 | 4 |" in (tables / "table2_n_hat.md").read_text()
    assert "| base | none |" in (tables / "table1_perplexity.md").read_text()
    recovery = (tables / "table10_short_recovery.md").read_text()
    assert ("| model | factors | scale | 32 (1·L0) | 64 (2·L0) | ratio vs base at L0 | ratio after / before recovery "
            "at L0 | ratio after / before recovery at 2·L0 |") in recovery
    assert "| base | none | 1.00 | " in recovery and "| 1.000 [1.000, 1.000] |  |  |" in recovery  # itself
    assert "| ft_256k | searched λ + short recovery | 8.00 |" in recovery
    assert "| base | yarn | 8.00 |" in (tables / "table5_extended_models.md").read_text()

    passkey, needles = pd.read_csv(tables / "passkey.csv"), pd.read_csv(tables / "needles.csv")
    settings = config["evaluation"]["passkey"]
    subjects = {("base", "none"), *(("base", m) for m in settings["baselines"]), ("base", "longrope"),
                ("ft_128k", "longrope"), ("ft_256k", "longrope_mixed"), ("ft_256k", "longrope_short")}
    assert set(zip(passkey["model"], passkey["method"])) == subjects
    assert set(passkey["depth"]) == set(settings["depths"]) and (passkey["trials"] == settings["trials"]).all()
    assert passkey["accuracy"].between(0, 1).all() and needles["score"].between(0, 1).all()
    assert (passkey["accuracy_lo"] <= passkey["accuracy"]).all() and (passkey["accuracy"] <= passkey["accuracy_hi"]).all()
    assert (needles["score_lo"] <= needles["score"]).all() and (needles["score"] <= needles["score_hi"]).all()
    assert set(needles["task"]) == {"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery",
                                    "variable_tracking"}

    for plot in ("perplexity.png", "pretrain_loss.png", "passkey_heatmap.png", "factors.png",
                 "finetune_128k_loss.png"):
        assert (tmp_path / "results" / "plots" / plot).stat().st_size > 10_000
    model_config = yaml.safe_load((tmp_path / "results" / "base" / "model" / "config.json").read_text())
    assert model_config["rope_parameters"]["rope_theta"] == config["pretrain"]["model"]["rope_theta"]
    assert model_config["max_position_embeddings"] == l0
    for rule in ("tokenizer", "pretrain_base", "evaluate_base/pi"):
        assert (tmp_path / "benchmarks" / f"{rule}.tsv").is_file()
    assert len(list((tmp_path / "benchmarks" / "token_store").glob("*.tsv"))) == 3
    assert not (tmp_path / "results" / "base" / "pretrain_work").exists()  # checkpoints cleaned up

    # The HTML report holds every registered plot and table.
    built = run("--report", "report.html", "--configfile", str(ROOT / "config" / "test.yaml"),
                "--directory", str(tmp_path), cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    for name in ("passkey_heatmap.png", "factors.png", "perplexity.png", "convergence.png", "passkey.csv"):
        assert name in html

    # Config-driven regeneration: an evaluation length reruns only evaluation and reporting jobs; a plot
    # setting reruns only that plot.
    lengths = write_config(tmp_path, lambda c: c["evaluation"].update(lengths=[32, 64, 128]))
    jobs = scheduled(run("-n", "--configfile", str(lengths), "--directory", str(tmp_path), cwd=tmp_path))
    assert "evaluate_base" in jobs and "tables" in jobs
    assert all(j.startswith(("evaluate_", "plot_")) or j in ("tables", "all") for j in jobs), jobs
    colour = write_config(tmp_path, lambda c: c["plots"]["passkey"].update(cmap="viridis"))
    assert scheduled(run("-n", "--configfile", str(colour), "--directory", str(tmp_path), cwd=tmp_path)) == {
        "plot_passkey", "all"}

    again = run("-n", "--cores", "2", "--configfile", str(ROOT / "config" / "test.yaml"),
                "--directory", str(tmp_path), cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["evaluation"].update(lenghts=[64]), "lenghts"),
    (lambda c: c["base_model"].update(path="/no/such/model"), "model directory '/no/such/model' does not exist"),
    (lambda c: c["stages"]["128k"].update(scale=0.5), "0.5 is less than the minimum of 1"),
    (lambda c: c["data"]["sources"]["sonnets"].update(books=["shakespeare/hamlet"]),
     "data.sources.sonnets and data.sources.plays share .*hamlet.txt.gz: a document serves one role"),
    (lambda c: c["data"]["sources"]["plays"].update(books=["dickens-*"]),
     "data.sources.plays.books: no book in .* matches 'dickens-\\*'"),
    (lambda c: c["data"]["sources"].update(plays={"files": ["corpus/*.parquet"]}),
     "data.sources.plays.files: no file in . matches 'corpus/\\*.parquet'"),
    (lambda c: c["data"].update(fitness="pg19"), "data.fitness: no source named 'pg19' in data.sources"),
    (lambda c: c["data"]["sources"]["sonnets"].pop("split"),
     "data.sources.sonnets serves fitness, evaluation: its split must give each of them a share"),
    (lambda c: c["data"]["sources"]["plays"].update(split={"train": 0.5, "fitness": 0.5}),
     "data.sources.plays.split divides the source between roles, but only \\['train'\\] uses it"),
    (lambda c: c["data"]["sources"]["sonnets"]["split"].update(fitness=0.7),
     "data.sources.sonnets.split: the shares add up to more than 1"),
    (lambda c: c["data"]["sources"]["plays"].update(revision="v1"), "data.sources.plays.revision pins a hub dataset"),
    (lambda c: c["base_model"].update(revision="v1"), "base_model.revision pins a hub model"),
    (lambda c: c["data"].update(tokenizer={"kind": "bpe"}), "vocab_size is required"),
    (lambda c: c["evaluation"].update(methods=["pi", "rope2"]), "rope2"),
    (lambda c: c["stages"]["256k"]["search"].update(model="512k"),
     "stages.256k.search.model must be 'base' or an earlier stage with a finetune section, got '512k'"),
    (lambda c: c["stages"]["128k"]["finetune"].update({"from": "256k"}),
     "stages.128k.finetune.from must be 'base' or an earlier stage"),
    (lambda c: c["stages"].update(x={"scale": 2, "finetune": {}}), "stages.x.finetune needs stages.x.search"),
    (lambda c: c["stages"]["short"]["search"].update(n_hat=[0, 2]), "recovery search keeps base_stage's n̂"),
    (lambda c: c["stages"]["128k"]["finetune"].update(processes=2), "processes > 1 needs a deepspeed config"),
    (lambda c: c["stages"]["128k"]["finetune"].update(deepspeed="tests/data/no-such.json"), "no-such.json does not exist"),
    (lambda c: c["stages"]["128k"]["finetune"].update(step=3), "step"),
    (lambda c: c["stages"]["128k"]["finetune"].update(mixed_window={"fraction": 0.5, "length": 33}),
     "stages.128k.finetune.mixed_window.length 33 exceeds base_model.original_length 32"),
    (lambda c: c["finetune"].update(mixed_window={"fraction": 1.0}), "1.0 is greater than or equal to the maximum"),
    (lambda c: c["export"].update(stage="4096k"), "export.stage must name a search stage"),
    (lambda c: c["export"].update(gguf={"dtype": "q4_k"}), "export.gguf.dtype: 'q4_k' is not one of"),
])
def test_bad_config_fails_before_any_job(tmp_path, edit, message):
    import re

    done = run("-n", "--configfile", str(write_config(tmp_path, edit)), "--directory", str(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert re.search(message, done.stdout + done.stderr), (done.stdout + done.stderr)[-2000:]
    assert not (tmp_path / "results").exists()


def test_unparsable_deepspeed_config_fails_before_any_job(tmp_path):
    broken = tmp_path / "zero.json"
    broken.write_text('{"zero_optimization": {"stage": 1,}}')
    path = write_config(tmp_path, lambda c: c["stages"]["256k"]["finetune"].update(deepspeed=str(broken)))
    done = run("-n", "--configfile", str(path), "--directory", str(tmp_path), cwd=tmp_path)
    assert done.returncode != 0 and "zero.json is not valid JSON" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()

