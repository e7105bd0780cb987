import csv
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from longrope.data import byte_tokenizer
from longrope.train import TrainConfig, train

# A child process that trains a tiny model; each batch is slowed down so the parent can kill it mid-run.
CHILD = """
import sys, time, numpy as np, torch
import longrope.train as T
from longrope.data import byte_tokenizer
from longrope.model import tiny_llama
torch.set_num_threads(1)
work, out, delay, backend = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
slow = T.batch_at
T.batch_at = lambda *a: (time.sleep(delay), slow(*a))[1]
tokens = np.random.default_rng(0).integers(0, 256, 20000).astype(np.uint16)
cfg = T.TrainConfig(steps=40, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=5, checkpoint_every=5,
                    seed=7, weight_decay=0.01)
model = tiny_llama(258, 32, 2, 2, 64, 500.0, 32, seed=0)
if backend == "deepspeed":
    from longrope.deepspeed_backend import DeepSpeedBackend
    backend = DeepSpeedBackend(model, cfg, {"zero_optimization": {"stage": 1}})
else:
    backend = T.TorchBackend(model, cfg)
T.train(model, tokens, byte_tokenizer(), cfg, work, work + "/loss.csv", backend=backend,
        finish=lambda trained: trained.save_pretrained(out))
"""


def run_child(tmp_path, work, out, backend, delay=0.0):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    return subprocess.Popen([sys.executable, str(script), str(work), str(out), str(delay), backend],
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("backend", ["torch", "deepspeed"])
def test_killed_training_resumes_to_the_same_weights(tmp_path, backend):
    straight = run_child(tmp_path, tmp_path / "a", tmp_path / "a.out", backend)
    (tmp_path / "a").mkdir()
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    (tmp_path / "b").mkdir()
    victim = run_child(tmp_path, tmp_path / "b", tmp_path / "b.out", backend, delay=0.05)
    deadline = time.time() + 120
    while not (tmp_path / "b" / "latest").is_file() or (tmp_path / "b" / "latest").read_text() < "step-000015":
        assert time.time() < deadline and victim.poll() is None, "child ended before it could be killed"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "b.out").exists()

    resumed = run_child(tmp_path, tmp_path / "b", tmp_path / "b.out", backend)
    assert resumed.wait(timeout=300) == 0
    assert "resuming from" in resumed.stderr.read()

    a, b = (load_file(tmp_path / f"{run}.out" / "model.safetensors") for run in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "b" / "loss.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, 41))  # rows after the checkpoint were dropped, not duplicated


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, tiny_model):
    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    cfg = TrainConfig(steps=10, batch_size=2, seq_len=16, lr=1e-3, checkpoint_every=2)
    poisoned = {"done": False}

    def poison(module, args, output):  # the 5th forward returns NaN
        poisoned["calls"] = poisoned.get("calls", 0) + 1
        if poisoned["calls"] == 5:
            return output * float("nan")

    tiny_model.model.norm.register_forward_hook(poison)
    with pytest.raises(FloatingPointError, match="loss became nan at step 4; last good checkpoint kept"):
        train(tiny_model, tokens, byte_tokenizer(), cfg, tmp_path, tmp_path / "loss.csv")
    assert (tmp_path / "latest").read_text() == "step-000004"


def test_resume_refuses_other_settings(tmp_path, tiny_model):
    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    cfg = TrainConfig(steps=4, batch_size=2, seq_len=16, lr=1e-3, checkpoint_every=2)
    train(tiny_model, tokens, byte_tokenizer(), cfg, tmp_path, tmp_path / "loss.csv")
    with pytest.raises(ValueError, match="other training settings"):
        train(tiny_model, tokens, byte_tokenizer(), TrainConfig(**{**cfg.__dict__, "lr": 2e-3}), tmp_path,
              tmp_path / "loss.csv")


def test_lr_schedules():
    cosine = TrainConfig(steps=110, batch_size=1, seq_len=8, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert cosine.lr_at(0) == pytest.approx(0.1) and cosine.lr_at(9) == pytest.approx(1.0)
    assert cosine.lr_at(10) == pytest.approx(1.0) and cosine.lr_at(110) == pytest.approx(0.1)
    assert cosine.lr_at(60) == pytest.approx(0.55)
    linear = TrainConfig(steps=120, batch_size=1, seq_len=8, lr=2e-5, warmup_steps=20, schedule="linear")
    assert linear.lr_at(70) == pytest.approx(1e-5) and linear.lr_at(120) == pytest.approx(0.0)
    constant = TrainConfig(steps=10, batch_size=1, seq_len=8, lr=1e-6, schedule="constant")
    assert constant.lr_at(9) == 1e-6


@pytest.mark.parametrize("bad, message", [
    ({"steps": 0}, "steps must be positive"),
    ({"schedule": "step"}, "unknown lr schedule 'step'"),
    ({"passkey_fraction": 1.5}, "passkey_fraction must lie in"),
])
def test_train_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"steps": 10, "batch_size": 1, "seq_len": 8, "lr": 1e-3, **bad})


def test_batches_are_a_function_of_seed_and_step():
    from longrope.train import batch_at

    tokens = np.arange(10_000) % 256
    cfg = TrainConfig(steps=10, batch_size=8, seq_len=128, lr=1e-3, passkey_fraction=0.25, seed=3)
    a = batch_at(4, tokens, cfg, byte_tokenizer())
    assert a.shape == (8, 129)
    assert torch.equal(a, batch_at(4, tokens, cfg, byte_tokenizer()))
    assert not torch.equal(a, batch_at(5, tokens, cfg, byte_tokenizer()))
    assert "pass key" in byte_tokenizer().decode(a[-1].tolist())


def test_deepspeed_zero1_trains_like_plain_torch(tmp_path):
    """One DeepSpeed process with ZeRO-1 and our AdamW follows the plain torch run (same batches, same optimiser)."""
    runs = {b: run_child(tmp_path, tmp_path / b, tmp_path / f"{b}.out", b) for b in ("torch", "deepspeed")}
    for backend, child in runs.items():
        (tmp_path / backend).mkdir(exist_ok=True)
        assert child.wait(timeout=300) == 0, child.stderr.read()
    plain, zero = (load_file(tmp_path / f"{b}.out" / "model.safetensors") for b in ("torch", "deepspeed"))
    for name in plain:
        torch.testing.assert_close(zero[name], plain[name], rtol=1e-4, atol=1e-5)
    from longrope.model import tiny_llama

    untrained = tiny_llama(258, 32, 2, 2, 64, 500.0, 32, seed=0).state_dict()
    assert all(not torch.allclose(plain[k], untrained[k]) for k in plain if k.endswith("proj.weight"))


def test_gradient_accumulation_equals_the_whole_batch(tiny_model):
    import copy

    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    whole = TrainConfig(steps=3, batch_size=4, seq_len=16, lr=1e-3, checkpoint_every=10)
    micro = TrainConfig(**{**whole.__dict__, "micro_batch_size": 1})
    assert micro.accumulation(1) == (1, 4) and micro.accumulation(2) == (1, 2) and whole.accumulation(2) == (2, 1)
    a, b = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    with tempfile.TemporaryDirectory() as d:
        train(a, tokens, byte_tokenizer(), whole, Path(d) / "a", Path(d) / "a.csv")
        train(b, tokens, byte_tokenizer(), micro, Path(d) / "b", Path(d) / "b.csv")
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="batch_size 4 does not split into 3 process"):
        whole.accumulation(3)


def test_block_sampling_takes_whole_chunks():
    from longrope.train import batch_at

    tokens = np.arange(1000)
    cfg = TrainConfig(steps=5, batch_size=6, seq_len=100, lr=1e-3, sampling="blocks")
    for step in range(5):
        batch = batch_at(step, tokens, cfg, byte_tokenizer())
        assert batch.shape == (6, 101) and (batch[:, 0] % 100 == 0).all()
        assert (batch[:, -1] <= 999).all()


def test_deepspeed_config_is_completed_from_the_training_settings():
    from longrope.deepspeed_config import fill_deepspeed_config, load_deepspeed_config

    cfg = TrainConfig(steps=5, batch_size=32, seq_len=128, lr=2e-5, betas=(0.9, 0.999), micro_batch_size=1)
    zero3 = fill_deepspeed_config(load_deepspeed_config(ROOT / "config" / "deepspeed" / "zero3_offload.json"),
                                  cfg, data_ranks=8, precision="bf16")
    assert (zero3["train_batch_size"], zero3["train_micro_batch_size_per_gpu"], zero3["gradient_accumulation_steps"]) == (32, 1, 4)
    assert zero3["bf16"]["enabled"] is True and zero3["gradient_clipping"] == 1.0
    assert zero3["optimizer"]["params"] == {"lr": 2e-5, "betas": [0.9, 0.999], "weight_decay": 0.0, "eps": 1e-8}
    zero1 = fill_deepspeed_config(load_deepspeed_config(ROOT / "config" / "deepspeed" / "zero1.json"), cfg, 1, "fp32")
    assert zero1["zero_optimization"] == {"stage": 1} and zero1["bf16"]["enabled"] is False
    with pytest.raises(ValueError, match="DeepSpeed config sets train_batch_size = 64 but the training settings give 32"):
        fill_deepspeed_config({"train_batch_size": 64}, cfg, 1, "fp32")


def test_broken_deepspeed_config_is_named(tmp_path):
    from longrope.deepspeed_config import load_deepspeed_config

    (tmp_path / "bad.json").write_text("{\"zero_optimization\": ")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        load_deepspeed_config(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        load_deepspeed_config(tmp_path / "list.json")
