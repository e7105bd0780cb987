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
from longrope.data.tokenizer import byte_tokenizer
from longrope.training.loop import TrainConfig, train

# A child process that trains a tiny model; each batch is slowed down so the parent can kill it mid-run.
CHILD = """
import sys, time, numpy as np, torch
import longrope.training.loop as T
from longrope.data.tokenizer import byte_tokenizer
from longrope.logs import log_to
from longrope.model import tiny_llama
torch.set_num_threads(1)
log_to(sys.stderr)  # the package's messages (the resume) are shown only where a program asks for them
work, out, delay, backend = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
short_fraction = float(sys.argv[5])
slow = T.batch_at
T.batch_at = lambda *a: (time.sleep(delay), slow(*a))[1]
tokens = np.random.default_rng(0).integers(0, 256, 20000).astype(np.uint16)
mixed = {"short_fraction": short_fraction, "short_len": 16} if short_fraction else {}
cfg = T.TrainConfig(steps=40, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=5, checkpoint_every=5,
                    seed=7, weight_decay=0.01, **mixed)
model = tiny_llama(258, 32, 2, 2, 64, 500.0, 32, seed=0)
if backend == "deepspeed":
    from longrope.training.deepspeed_backend import DeepSpeedBackend
    backend = DeepSpeedBackend(model, cfg, {"zero_optimization": {"stage": 1}})
else:
    backend = T.TorchBackend(model, cfg)
T.train(model, tokens, byte_tokenizer(), cfg, work, work + "/loss.csv", backend=backend,
        finish=lambda trained: trained.save_pretrained(out))
"""


def run_child(tmp_path, work, out, backend, delay=0.0, short_fraction=0.0):
    """The child above; short_fraction 0.5: mixed context windows, each step 2 rows of 32 tokens and 2 of 16."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    return subprocess.Popen(
        [sys.executable, str(script), str(work), str(out), str(delay), backend, str(short_fraction)],
        stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("backend, short_fraction", [("torch", 0.0), ("deepspeed", 0.0), ("deepspeed", 0.5)],
                         ids=["torch", "deepspeed", "deepspeed-mixed-window"])
def test_killed_training_resumes_to_the_same_weights(tmp_path, backend, short_fraction):
    straight = run_child(tmp_path, tmp_path / "a", tmp_path / "a.out", backend, short_fraction=short_fraction)
    (tmp_path / "a").mkdir()
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    (tmp_path / "b").mkdir()
    victim = run_child(tmp_path, tmp_path / "b", tmp_path / "b.out", backend, delay=0.05, short_fraction=short_fraction)
    deadline = time.time() + 120
    while not (tmp_path / "b" / "latest").is_file() or (tmp_path / "b" / "latest").read_text() < "step-000015":
        assert time.time() < deadline and victim.poll() is None, "child ended before it could be killed"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "b.out").exists()

    resumed = run_child(tmp_path, tmp_path / "b", tmp_path / "b.out", backend, short_fraction=short_fraction)
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


def test_checkpoint_probe_sees_the_weights_of_each_checkpoint_in_eval_mode(tmp_path, tiny_model):
    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    cfg = TrainConfig(steps=6, batch_size=2, seq_len=16, lr=1e-3, checkpoint_every=2)
    seen = []

    def probe(step, model):
        saved = load_file(tmp_path / "work" / f"step-{step:06d}" / "model.safetensors")
        shared = [name for name in model.state_dict() if name in saved]
        same = len(shared) >= len(saved) - 1 and all(torch.equal(saved[n], model.state_dict()[n]) for n in shared)
        seen.append((step, model.training, same))

    train(tiny_model, tokens, byte_tokenizer(), cfg, tmp_path / "work", tmp_path / "loss.csv", on_checkpoint=probe)
    assert seen == [(2, False, True), (4, False, True)]  # the last step is not a checkpoint


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
    ({"short_fraction": 1.0, "short_len": 4}, r"short_fraction must lie in \[0, 1\)"),
    ({"short_fraction": 0.5}, r"short_len must lie in \[1, seq_len = 8\], got None"),
    ({"short_fraction": 0.5, "short_len": 9}, r"short_len must lie in \[1, seq_len = 8\], got 9"),
    ({"short_fraction": 0.5, "batch_size": 1, "short_len": 4}, "gives 0 short rows: a mixed context window needs"),
    ({"short_fraction": 0.9, "batch_size": 4, "short_len": 4}, "gives 4 short rows: a mixed context window needs"),
])
def test_train_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"steps": 10, "batch_size": 1, "seq_len": 8, "lr": 1e-3, **bad})


def test_mixed_window_rows_split_evenly_over_processes_and_micro_batches():
    mixed = dict(steps=1, seq_len=64, lr=1e-3, short_len=32)
    assert TrainConfig(batch_size=8, short_fraction=0.25, **mixed).rows() == (6, 2)
    # 6 long + 2 short rows: micro-batches of 2 (their common divisor), or of 1; 2 processes take 3 + 1 each
    assert TrainConfig(batch_size=8, short_fraction=0.25, **mixed).accumulation(1) == (2, 4)
    assert TrainConfig(batch_size=8, short_fraction=0.25, micro_batch_size=1, **mixed).accumulation(1) == (1, 8)
    assert TrainConfig(batch_size=8, short_fraction=0.25, **mixed).accumulation(2) == (1, 4)
    with pytest.raises(ValueError, match=r"batch_size 8 \(6 long \+ 2 short rows\) does not split into 4 process"):
        TrainConfig(batch_size=8, short_fraction=0.25, **mixed).accumulation(4)
    with pytest.raises(ValueError, match=r"\(4 long \+ 4 short rows\) does not split into 1 process\(es\) × "
                                         "micro-batches of 3"):
        TrainConfig(batch_size=8, short_fraction=0.5, micro_batch_size=3, **mixed).accumulation(1)


def test_batches_are_a_function_of_seed_and_step():
    from longrope.training.loop import batch_at

    tokens = np.arange(10_000) % 256
    cfg = TrainConfig(steps=10, batch_size=8, seq_len=128, lr=1e-3, passkey_fraction=0.25, seed=3)
    a, = batch_at(4, tokens, cfg, byte_tokenizer())  # rows of one length
    assert a.shape == (8, 129)
    assert torch.equal(a, batch_at(4, tokens, cfg, byte_tokenizer())[0])
    assert not torch.equal(a, batch_at(5, tokens, cfg, byte_tokenizer())[0])
    assert "pass key" in byte_tokenizer().decode(a[-1].tolist())


@pytest.mark.parametrize("short_fraction", [0.0, 0.5], ids=["one-forward", "mixed-window"])
def test_deepspeed_zero1_trains_like_plain_torch(tmp_path, short_fraction):
    """One DeepSpeed process with ZeRO-1 and our AdamW follows the plain torch run (same batches, same optimiser);
    with mixed windows each step takes two forwards, and DeepSpeed must update the weights once, after both."""
    runs = {b: run_child(tmp_path, tmp_path / b, tmp_path / f"{b}.out", b, short_fraction=short_fraction)
            for b in ("torch", "deepspeed")}
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
    from longrope.training.loop import batch_at

    tokens = np.arange(1000)
    cfg = TrainConfig(steps=5, batch_size=6, seq_len=100, lr=1e-3, sampling="blocks")
    for step in range(5):
        batch, = batch_at(step, tokens, cfg, byte_tokenizer())
        assert batch.shape == (6, 101) and (batch[:, 0] % 100 == 0).all()
        assert (batch[:, -1] <= 999).all()


def test_deepspeed_config_is_completed_from_the_training_settings():
    from longrope.training.deepspeed_config import fill_deepspeed_config, load_deepspeed_config

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
    from longrope.training.deepspeed_config import load_deepspeed_config

    (tmp_path / "bad.json").write_text("{\"zero_optimization\": ")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        load_deepspeed_config(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        load_deepspeed_config(tmp_path / "list.json")


# ---------------------------------------------------------------------------------------------
# Mixed context window (LongRoPE2): short rows under the original RoPE, long rows under the searched λ

FACTORS = (1.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0)  # the tiny model's 8 rotary pairs; L0 = 32, target 64


def test_mixed_window_batches_are_a_function_of_seed_and_step():
    from longrope.training.loop import batch_at

    tokens = np.arange(10_000) % 256
    cfg = TrainConfig(steps=10, batch_size=8, seq_len=128, lr=1e-3, passkey_fraction=0.5, seed=3, sampling="blocks",
                      short_fraction=0.25, short_len=32)
    long, short = batch_at(4, tokens, cfg, byte_tokenizer())
    assert long.shape == (6, 129) and short.shape == (2, 33)
    assert all("pass key" in byte_tokenizer().decode(row.tolist()) for row in long[3:])  # half the long rows
    assert (short[:, 0] % 32 == 0).all()  # whole 32-token blocks, as the long rows' 128-token ones
    again = batch_at(4, tokens, cfg, byte_tokenizer())
    assert torch.equal(long, again[0]) and torch.equal(short, again[1])
    assert not torch.equal(short, batch_at(5, tokens, cfg, byte_tokenizer())[1])


def test_mixed_window_rows_see_the_original_rope_and_long_rows_the_searched_factors(tmp_path, tiny_model):
    from longrope.patching import apply_rope_scaling
    from longrope.rope import RopeScaling, mixed_window_scaling

    scaling = mixed_window_scaling(RopeScaling("longrope", 32, 64, factors=FACTORS))
    apply_rope_scaling(tiny_model, scaling)
    seen = []  # rows, positions and cos of every forward's rotary call
    tiny_model.model.rotary_emb.register_forward_hook(
        lambda module, args, kwargs, out: seen.append((len(args[0]), kwargs["position_ids"][0].clone(),
                                                       out[0][0].detach().clone())), with_kwargs=True)
    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    cfg = TrainConfig(steps=2, batch_size=4, seq_len=64, lr=1e-3, checkpoint_every=10, short_fraction=0.5, short_len=20)
    train(tiny_model, tokens, byte_tokenizer(), cfg, tmp_path, tmp_path / "loss.csv")

    def cos(positions, factors):  # RoPE by hand: θ = 500, head_dim 16, wavelengths stretched by λ
        angles = positions[:, None].float() / (torch.tensor(factors) * 500.0 ** (torch.arange(0, 16, 2) / 16))
        return torch.cat([angles, angles], dim=-1).cos() * scaling.attention_scale

    assert [(rows, len(positions)) for rows, positions, _ in seen] == [(2, 64), (2, 20)] * 2  # long, then short
    for rows, positions, got in seen:
        factors = FACTORS if len(positions) == 64 else (1.0,) * 8
        torch.testing.assert_close(got, cos(positions, factors))
    assert not torch.allclose(seen[1][2], cos(seen[1][1], FACTORS))  # the searched λ would differ there


def test_mixed_window_step_loss_is_the_mean_over_rows(tmp_path, tiny_model):
    """4 long rows in two micro-batches, 2 short rows in one: the step's loss and gradient weigh every row alike,
    not each micro-batch or each length."""
    import copy

    from longrope.model import next_token_nll
    from longrope.training.loop import TorchBackend, batch_at

    class Recording(TorchBackend):
        def step(self):
            self.grads = {name: p.grad.clone() for name, p in self.model.named_parameters()}
            return super().step()

    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    cfg = TrainConfig(steps=1, batch_size=6, seq_len=32, lr=1e-3, checkpoint_every=10, short_fraction=1 / 3,
                      short_len=16)
    assert cfg.rows() == (4, 2) and cfg.accumulation(1) == (2, 3)
    reference = copy.deepcopy(tiny_model).train()
    long, short = batch_at(0, tokens, cfg, byte_tokenizer())
    per_row = torch.cat([next_token_nll(reference, long).mean(1), next_token_nll(reference, short).mean(1)])
    per_row.mean().backward()
    backend = Recording(tiny_model, cfg)
    train(tiny_model, tokens, byte_tokenizer(), cfg, tmp_path, tmp_path / "loss.csv", backend=backend)
    logged = np.loadtxt(tmp_path / "loss.csv", delimiter=",", skiprows=1, usecols=1)
    assert float(logged) == pytest.approx(per_row.mean().item(), abs=1e-5)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(backend.grads[name], p.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_mixed_window_training_resumes_to_the_same_weights(tmp_path, tiny_model, monkeypatch):
    """A run that dies at step 5 and is restarted ends with the weights of one that never stopped."""
    import copy

    import longrope.training.loop as T

    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint16)
    cfg = TrainConfig(steps=6, batch_size=4, seq_len=32, lr=1e-3, checkpoint_every=2, seed=5, short_fraction=0.5,
                      short_len=16)
    straight = train(copy.deepcopy(tiny_model), tokens, byte_tokenizer(), cfg, tmp_path / "a", tmp_path / "a.csv")

    batch_at = T.batch_at

    def dies_at_step_5(step, *args):
        if step == 5:
            raise KeyboardInterrupt
        return batch_at(step, *args)

    monkeypatch.setattr(T, "batch_at", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(copy.deepcopy(tiny_model), tokens, byte_tokenizer(), cfg, tmp_path / "b", tmp_path / "b.csv")
    monkeypatch.undo()
    assert (tmp_path / "b" / "latest").read_text() == "step-000004"
    resumed = train(copy.deepcopy(tiny_model), tokens, byte_tokenizer(), cfg, tmp_path / "b", tmp_path / "b.csv")
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name
    with open(tmp_path / "b.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 7))
