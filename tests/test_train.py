import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from longrope.data import ByteTokenizer
from longrope.train import TrainConfig, train

# A child process that trains a tiny model; each batch is slowed down so the parent can kill it mid-run.
CHILD = """
import sys, time, numpy as np, torch
import longrope.train as T
from longrope.data import ByteTokenizer
from longrope.model import tiny_llama
torch.set_num_threads(1)
work, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
slow = T.batch_at
T.batch_at = lambda *a: (time.sleep(delay), slow(*a))[1]
tokens = np.random.default_rng(0).integers(0, 256, 20000).astype(np.uint16)
cfg = T.TrainConfig(steps=40, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=5, checkpoint_every=5,
                    seed=7)
model = tiny_llama(258, 32, 2, 2, 64, 500.0, 32, seed=0)
T.train(model, tokens, ByteTokenizer(), cfg, work, work + "/loss.csv")
from safetensors.torch import save_model
save_model(model, out)
"""


def run_child(tmp_path, work, out, delay=0.0):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), str(work), str(out), str(delay)],
                            stderr=subprocess.PIPE, text=True)


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    straight = run_child(tmp_path, tmp_path / "a", tmp_path / "a.safetensors")
    (tmp_path / "a").mkdir()
    assert straight.wait(timeout=120) == 0, straight.stderr.read()

    (tmp_path / "b").mkdir()
    victim = run_child(tmp_path, tmp_path / "b", tmp_path / "b.safetensors", delay=0.05)
    deadline = time.time() + 60
    while not (tmp_path / "b" / "latest").is_file() or (tmp_path / "b" / "latest").read_text() < "step-000015":
        assert time.time() < deadline and victim.poll() is None, "child ended before it could be killed"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "b.safetensors").exists()

    resumed = run_child(tmp_path, tmp_path / "b", tmp_path / "b.safetensors")
    assert resumed.wait(timeout=120) == 0
    assert "resuming from" in resumed.stderr.read()

    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
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
        train(tiny_model, tokens, ByteTokenizer(), cfg, tmp_path, tmp_path / "loss.csv")
    assert (tmp_path / "latest").read_text() == "step-000004"


def test_resume_refuses_other_settings(tmp_path, tiny_model):
    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    cfg = TrainConfig(steps=4, batch_size=2, seq_len=16, lr=1e-3, checkpoint_every=2)
    train(tiny_model, tokens, ByteTokenizer(), cfg, tmp_path, tmp_path / "loss.csv")
    with pytest.raises(ValueError, match="other training settings"):
        train(tiny_model, tokens, ByteTokenizer(), TrainConfig(**{**cfg.__dict__, "lr": 2e-3}), tmp_path,
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
    a = batch_at(4, tokens, cfg, ByteTokenizer())
    assert a.shape == (8, 129)
    assert torch.equal(a, batch_at(4, tokens, cfg, ByteTokenizer()))
    assert not torch.equal(a, batch_at(5, tokens, cfg, ByteTokenizer()))
    assert "pass key" in ByteTokenizer().decode(a[-1].tolist())
