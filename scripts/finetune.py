"""Fine-tune a model at a stage's length with the stage's searched RoPE factors (paper §3.3, §4.1).

A command-line script rather than a Snakemake `script:` so that `torchrun` or `deepspeed` can launch it on several
processes; the rule passes every setting. A rerun resumes from the last checkpoint in --work-dir.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import TokenStore
from longrope.logs import log_to
from longrope.model import load_model, save_extended, training_precision
from longrope.patching import tile_mlp
from longrope.plan import FinetuneSettings
from longrope.rope import mixed_window_scaling
from longrope.factors import load_factors
from longrope.training.loop import TorchBackend, TrainConfig, chunk_supply_error, train

TRAIN_KEYS = ("steps", "batch_size", "micro_batch_size", "lr", "warmup_steps", "schedule", "min_lr_ratio", "betas",
              "weight_decay", "grad_clip", "seed", "checkpoint_every", "passkey_fraction", "sampling",
              "epochs")

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--model", required=True, help="folder of the model to start from")
parser.add_argument("--scaling", required=True, help="the stage's factors.json (from its search)")
parser.add_argument("--tokens", required=True, help="the training token store (results/data/train)")
parser.add_argument("--tokenizer", required=True)
parser.add_argument("--out", required=True, help="folder for the fine-tuned model")
parser.add_argument("--loss", required=True, help="loss log CSV")
parser.add_argument("--work-dir", required=True, help="checkpoints; a rerun resumes from here")
parser.add_argument("--settings", required=True, help="the stage's fine-tune settings as JSON")
parser.add_argument("--sequence", type=int, default=1, help="ranks that share each row (sequence parallelism)")
args = parser.parse_args()
# The rule sends this program's stderr to its log; the package's messages (a resume) go with it.
log_to(sys.stderr)

settings = json.loads(args.settings)
dtype = settings.pop("dtype")  # compute.dtype as configured; resolved here, on the machine that trains
settings = FinetuneSettings.from_dict(settings)
torch.set_num_threads(settings.threads)
scaling = load_factors(args.scaling)
short = {}
if settings.mixed_window:
    # LongRoPE2's mixed context window: short rows of at most L0 tokens train under the original RoPE (a short set
    # of ones), long rows under the searched λ; the model is saved with this scaling, so loading it applies both.
    scaling = mixed_window_scaling(scaling)
    short = {"short_fraction": settings.mixed_window["fraction"],
             "short_len": settings.mixed_window.get("length") or scaling.original_length}
cfg = TrainConfig(seq_len=settings.seq_len or scaling.target_length, **short,
                  **{k: getattr(settings, k) for k in TRAIN_KEYS})
gpu = torch.cuda.is_available()
# bf16 autocast over fp32 weights where compute.dtype chooses bfloat16 (GPUs, CPUs with bf16 matrix units).
precision = training_precision(settings.precision, dtype)
# Everything that can be wrong is checked before the first step: enough training chunks, the DeepSpeed JSON, the
# model folder, and that the factors fit this model's head size and really change its forward.
tokenizer = load_tokenizer(args.tokenizer)
store = TokenStore.open(args.tokens)
tokens = store.tokens
if cfg.sampling == "chunks" and (error := chunk_supply_error(tokens, cfg, tokenizer)):
    sys.exit(f"finetune.sampling chunks ({args.tokens}): {error}")
if args.sequence > 1 and not settings.deepspeed:
    sys.exit(f"--sequence {args.sequence} needs a deepspeed config: the ranks that share a row are DeepSpeed's")
if settings.deepspeed:
    from longrope.training.deepspeed_backend import DeepSpeedBackend
    from longrope.training.deepspeed_config import load_deepspeed_config

    deepspeed_config = load_deepspeed_config(settings.deepspeed)
model = load_model(args.model, attention=settings.attention, scaling=scaling)
store.check_vocabulary(model.config.vocab_size)
if settings.gradient_checkpointing is True or (settings.gradient_checkpointing == "auto" and gpu):
    model.gradient_checkpointing_enable()
if settings.tile_mlp:
    tile_mlp(model, settings.tile_mlp)
print(f"fine-tuning {args.model} at {cfg.seq_len} tokens with {args.scaling} ({precision}); {cfg}", file=sys.stderr)

backend = (DeepSpeedBackend(model, cfg, deepspeed_config, precision, args.sequence) if settings.deepspeed
           else TorchBackend(model, cfg, precision))
print(f"backend: {type(backend).__name__}, {backend.world_size} process(es), {args.sequence} per row", file=sys.stderr)


def save(trained):
    save_extended(trained, scaling, args.out)
    tokenizer.save(args.out)


train(model, tokens, tokenizer, cfg, args.work_dir, args.loss, backend=backend, finish=save)
if backend.rank == 0 and Path(args.work_dir).is_dir():  # no checkpoint, no folder: a run shorter than checkpoint_every
    shutil.rmtree(args.work_dir)
