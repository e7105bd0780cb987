"""The Snakemake workflow end to end on config/test.yaml, plus config errors caught before any job runs."""
import json
import subprocess

import numpy as np

import pandas as pd
import pytest
import yaml

from conftest import ROOT, snakemake_cmd


def run(*args, cwd):
    return subprocess.run(snakemake_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=900)


def write_config(tmp_path, edit):
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.integration
def test_test_config_runs_end_to_end(tmp_path):
    done = run("--cores", "2", "--configfile", str(ROOT / "config" / "test.yaml"), "--directory", str(tmp_path),
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    lengths = config["evaluation"]["lengths"]
    l0 = config["base_model"]["original_length"]
    scales = {float(s["scale"]) for s in config["stages"].values()}

    tidy = pd.read_csv(tmp_path / "results" / "tables" / "perplexity.csv")
    assert {"study", "model", "method", "scale", "n_hat", "length", "ppl", "n_samples", "tokens"} <= set(tidy.columns)
    assert set(tidy["method"]) == set(config["evaluation"]["methods"]) | {"longrope", "longrope_lambda"}
    study = tidy[tidy["study"] == "n_hat"]  # paper Table 2: PI and dynamic NTK by n̂ at each search target
    search_stages = {k: v for k, v in config["stages"].items() if "search" in v}
    assert len(study) == 2 * len(config["evaluation"]["n_hat_study"]) * len(search_stages)
    assert set(study["length"]) == {v["scale"] * l0 for v in search_stages.values()}
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
        assert found["scaling"]["factors"] == pytest.approx(factors.tolist())
        assert found["scale"] == spec["scale"] and found["target_length"] == spec["scale"] * l0
        assert found["scaling"]["n_hat"] in config["search"]["n_hat"]
        lines = (out / "search_log.jsonl").read_text().splitlines()
        assert len(lines) == 1 + config["search"]["generations"] + 1  # header + generation 0…T
        halved = spec["scale"] > config["search"]["halve_above_scale"]
        population = config["search"]["population"] // (2 if halved else 1)
        assert json.loads(lines[0])["config"]["population"] == population
        assert (out / "convergence.png").stat().st_size > 10_000
        searched = tidy[(tidy["method"] == "longrope") & (tidy["scale"] == spec["scale"])]
        assert searched["length"].max() == min(max(lengths), beyond * spec["scale"] * l0)
        twin = tmp_path / "results" / "search" / f"{stage}_lambda" / "factors.json"  # λ-only ablation twin
        assert twin.is_file() == ({**config["search"], **spec["search"]}["n_hat"] != [0])
        if spec["search"].get("mode") == "secondary":  # λ_ft ⊙ λ₂: never below the carried factors
            carried = np.loadtxt(tmp_path / "results" / "search" / spec["search"]["base_stage"] / "factors.csv")
            assert (factors >= carried - 1e-9).all()
        if spec["search"].get("mode") == "recovery":
            assert factors.max() <= spec["search"]["ceiling"]

    tables = tmp_path / "results" / "tables"
    assert "| scale | length | longrope | best baseline | its ppl | ratio |" in (tables / "search_vs_baselines.md").read_text()
    assert "| scale | length | PI | λ only | λ + n̂ |" in (tables / "table11_ablation.md").read_text()
    assert "| method | scale | length | 0 | 4 |" in (tables / "table2_n_hat.md").read_text()

    assert "| none |" in (tmp_path / "results" / "tables" / "perplexity.md").read_text()
    for plot in ("perplexity_base.png", "pretrain_loss.png"):
        assert (tmp_path / "results" / "plots" / plot).stat().st_size > 10_000
    model_config = yaml.safe_load((tmp_path / "results" / "base" / "model" / "config.json").read_text())
    assert model_config["rope_parameters"]["rope_theta"] == config["pretrain"]["model"]["rope_theta"]
    assert model_config["max_position_embeddings"] == l0
    for rule in ("tokenizer", "token_ids", "pretrain_base", "evaluate_base/pi"):
        assert (tmp_path / "benchmarks" / f"{rule}.tsv").is_file()
    assert not (tmp_path / "results" / "base" / "pretrain_work").exists()  # checkpoints cleaned up

    again = run("-n", "--cores", "2", "--configfile", str(ROOT / "config" / "test.yaml"),
                "--directory", str(tmp_path), cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["evaluation"].update(lenghts=[64]), "lenghts"),
    (lambda c: c["base_model"].update(path="/no/such/model"), "model directory '/no/such/model' does not exist"),
    (lambda c: c["stages"]["128k"].update(scale=0.5), "0.5 is less than the minimum of 1"),
    (lambda c: c["data"].update(heldout_books=["shakespeare/hamlet"]), "held-out books also in train_books"),
    (lambda c: c["data"].update(train_books=["dickens-*"]), "no book in .* matches 'dickens-\\*'"),
    (lambda c: c["data"].update(tokenizer={"kind": "bpe"}), "vocab_size is required"),
    (lambda c: c["evaluation"].update(methods=["pi", "rope2"]), "rope2"),
])
def test_bad_config_fails_before_any_job(tmp_path, edit, message):
    import re

    done = run("-n", "--configfile", str(write_config(tmp_path, edit)), "--directory", str(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert re.search(message, done.stdout + done.stderr), (done.stdout + done.stderr)[-2000:]
    assert not (tmp_path / "results").exists()


def test_lint_passes():
    done = run("--lint", "--configfile", str(ROOT / "config" / "test.yaml"), cwd=ROOT)
    assert done.returncode == 0 and "good condition" in done.stdout + done.stderr, done.stdout + done.stderr
