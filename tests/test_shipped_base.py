"""The base model shipped in data/base: its files are the ones its manifest lists, the manifest names the default
config's pretrain recipe, and that recipe, run by the workflow's own pretrain_base rule on a shortened schedule,
retraces the shipped training loss."""
import csv
import json
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, snakemake_cmd
from longrope.shipped import MANIFEST, PRETRAIN_LOSS, digest, mismatched_files, read_manifest, recipe

SHIPPED = ROOT / "data" / "base"
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def loss_rows(path):
    return list(csv.DictReader(open(path)))


def test_the_shipped_files_are_the_manifests():
    manifest = read_manifest(SHIPPED)
    assert {"model.safetensors", "config.json", PRETRAIN_LOSS} <= set(manifest["files"])
    assert mismatched_files(SHIPPED) == []
    assert (SHIPPED / "model.safetensors").stat().st_size <= 16 * 2**20
    assert manifest["steps"] == int(loss_rows(SHIPPED / PRETRAIN_LOSS)[-1]["step"])
    assert manifest["final_loss"] == float(loss_rows(SHIPPED / PRETRAIN_LOSS)[-1]["loss"])
    assert {"commit", "cpu", "seed", "train_seconds", "command"} <= set(manifest)


def test_the_manifest_names_the_default_configs_recipe():
    manifest = read_manifest(SHIPPED)
    assert manifest["recipe"] == recipe(DEFAULT)
    assert manifest["recipe_sha256"] == digest(recipe(DEFAULT))
    assert manifest["steps"] == DEFAULT["pretrain"]["train"]["steps"]
    assert DEFAULT["base_model"]["path"] == "data/base"


def test_a_changed_missing_or_unlisted_file_is_named(tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(SHIPPED, copy)
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    (copy / PRETRAIN_LOSS).unlink()
    (copy / "extra.bin").write_bytes(b"0")
    assert mismatched_files(copy) == ["config.json", "extra.bin", PRETRAIN_LOSS]


def test_the_recipe_retraces_the_shipped_loss(tmp_path):
    """Twelve steps of the recipe (all inside its warm-up, whose learning rate does not depend on the schedule's
    length) through `pretrain_base`, as the manifest's command runs it: the same losses as the shipped run's first
    twelve, to the rounding another CPU's kernels give."""
    steps = 12
    done = subprocess.run(snakemake_cmd(
        "--cores", "2", "--directory", str(tmp_path), "results/base/pretrain_loss.csv",
        "--config", "base_model={path: null}", f"pretrain={{train: {{steps: {steps}}}}}"),
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "results/base/pretrain_work").exists()
    ours, shipped = loss_rows(tmp_path / "results/base/pretrain_loss.csv"), loss_rows(SHIPPED / PRETRAIN_LOSS)
    assert len(ours) == steps
    assert [float(r["lr"]) for r in ours] == [float(r["lr"]) for r in shipped[:steps]]
    assert [float(r["loss"]) for r in ours] == pytest.approx([float(r["loss"]) for r in shipped[:steps]], rel=2e-3)
    config = json.loads((tmp_path / "results/base/model/config.json").read_text())
    assert config == json.loads((SHIPPED / "config.json").read_text())
    assert MANIFEST not in {p.name for p in (tmp_path / "results/base/model").iterdir()}
