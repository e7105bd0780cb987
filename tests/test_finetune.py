"""scripts/finetune.py: bad inputs fail before the first step with one clear message and leave no output."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from longrope.data.tokenizer import byte_tokenizer
from longrope.data.tokens import StoreWriter
from longrope.rope import RopeScaling

SETTINGS = {"steps": 4, "batch_size": 2, "micro_batch_size": None, "seq_len": None, "lr": 1e-3, "warmup_steps": 1,
            "schedule": "linear", "min_lr_ratio": 0.0, "betas": [0.9, 0.999], "weight_decay": 0.0, "grad_clip": 1.0,
            "seed": 42, "checkpoint_every": 2, "passkey_fraction": 0.0, "sampling": "blocks", "epochs": 1,
            "mixed_window": None,
            "deepspeed": None, "processes": 1, "precision": "auto", "gradient_checkpointing": "auto", "tile_mlp": None,
            "attention": "auto", "threads": 1,
            "dtype": "float32"}


@pytest.fixture
def inputs(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    tokenizer = byte_tokenizer()
    with StoreWriter(tmp_path / "tokens", tokenizer, source="random bytes") as store:
        store.append(np.random.default_rng(0).integers(0, 256, 5000))
    tokenizer.save(tmp_path / "tokenizer")
    return tmp_path


def finetune(tmp_path, factors, settings=None, model="model", out="out", launcher=(sys.executable,), args=()):
    (tmp_path / "factors.json").write_text(json.dumps({"scaling": RopeScaling(
        "longrope", 32, 64, factors=factors).to_dict()}))
    return subprocess.run(
        [*launcher, str(ROOT / "scripts" / "finetune.py"), "--model", str(tmp_path / model),
         "--scaling", str(tmp_path / "factors.json"), "--tokens", str(tmp_path / "tokens"),
         "--tokenizer", str(tmp_path / "tokenizer"), "--out", str(tmp_path / out),
         "--loss", str(tmp_path / f"{out}-loss.csv"), "--work-dir", str(tmp_path / f"{out}-work"),
         "--settings", json.dumps({**SETTINGS, **(settings or {})}), *args],
        capture_output=True, text=True, timeout=300)


def test_finetune_saves_the_model_with_its_scaling(inputs):
    done = finetune(inputs, [1.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0])
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((inputs / "out" / "longrope_scaling.json").read_text())
    assert saved["factors"] == [1.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0] and saved["target_length"] == 64
    assert (inputs / "out" / "tokenizer.json").is_file() and not (inputs / "out-work").exists()
    assert len((inputs / "out-loss.csv").read_text().splitlines()) == 1 + SETTINGS["steps"]


def test_mixed_window_model_is_saved_and_loaded_with_a_short_set_of_ones(inputs):
    """The scaling it trained with — the searched λ past L0 = 32 positions, the original RoPE within — is the one
    its folder carries, for this package (longrope_scaling.json) and for stock transformers (config.json)."""
    from longrope.model import load_model

    factors = [1.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0]
    done = finetune(inputs, factors, {"mixed_window": {"fraction": 0.5, "length": 24}})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "short_fraction=0.5, short_len=24" in done.stderr
    expected = RopeScaling("longrope", 32, 64, factors=factors, short_factors=(1.0,) * 8, short_length=32)
    assert RopeScaling.from_dict(json.loads((inputs / "out" / "longrope_scaling.json").read_text())) == expected
    rope = json.loads((inputs / "out" / "config.json").read_text())["rope_parameters"]
    assert rope["short_factor"] == [1.0] * 8 and rope["long_factor"] == factors
    assert rope["original_max_position_embeddings"] == 32
    assert rope["attention_factor"] == pytest.approx(expected.attention_scale)
    assert load_model(inputs / "out").model.rotary_emb.scaling == expected


@pytest.mark.parametrize("factors, settings, model, message", [
    ([1.0, 2.0, 2.0, 2.0], None, "model", "expected 8 factors for head_dim 16, got 4"),
    ([1.0] * 8, None, "missing", "model directory .*missing does not exist"),
    ([1.0] * 8, {"deepspeed": "broken.json"}, "model", "broken.json is not valid JSON"),
    ([1.0] * 8, {"batch_size": 3, "micro_batch_size": 2}, "model", "batch_size 3 does not split"),
    ([1.0] * 8, {"mixed_window": {"fraction": 0.1}}, "model", "short_fraction 0.1 of batch_size 2 gives 0 short rows"),
    ([1.0] * 8, {"sampling": "chunks", "steps": 50}, "model",
     r"holds 79 chunks of 65 tokens and the run needs 100; epochs > 1 lets chunks repeat"),
])
def test_bad_input_fails_before_training(inputs, factors, settings, model, message):
    import re

    (inputs / "broken.json").write_text("{")
    if settings and "deepspeed" in settings:
        settings = {"deepspeed": str(inputs / settings["deepspeed"])}
    done = finetune(inputs, factors, settings, model)
    assert done.returncode != 0 and re.search(message, done.stderr), done.stderr[-2000:]
    assert not (inputs / "out").exists() and not (inputs / "out-loss.csv").exists()


def check_two_ranks_train_the_weights_of_one(inputs, launcher):
    """DeepSpeed ZeRO-1 on two CPU ranks (gloo) started by `launcher`: each rank takes half of the global batch and
    the gradients are averaged, so weights and losses equal those of one process on the whole batch."""
    from safetensors.torch import load_file

    settings = {"deepspeed": str(ROOT / "config" / "deepspeed" / "zero1.json"), "steps": 3}
    factors = [1.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0]
    # Checkpoints do not change the weights: the one-process run writes none, the two ranks save a sharded one.
    one = finetune(inputs, factors, {**settings, "checkpoint_every": 10}, out="one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = finetune(inputs, factors, {**settings, "checkpoint_every": 2, "processes": 2}, out="two", launcher=launcher)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "backend: DeepSpeedBackend, 2 process(es)" in two.stderr
    a, b = load_file(inputs / "one" / "model.safetensors"), load_file(inputs / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=name)
    start = load_file(inputs / "model" / "model.safetensors")
    assert any(not torch.equal(a[name], start[name]) for name in a)  # the runs trained
    losses = [np.loadtxt(inputs / f"{run}-loss.csv", delimiter=",", skiprows=1, usecols=1) for run in ("one", "two")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


def test_two_processes_under_torchrun_train_the_weights_of_one(inputs):
    check_two_ranks_train_the_weights_of_one(
        inputs, (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
