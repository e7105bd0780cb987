"""Pretrain the embedded default's tiny Llama at L0 (checkpoints in params.work_dir; a rerun resumes)."""
import shutil

import torch

from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import load_tokens
from longrope.logs import to_rule_log
from longrope.model import tiny_llama
from longrope.training.loop import TrainConfig, train

to_rule_log(snakemake.log[0], append=True)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
tokenizer = load_tokenizer(snakemake.input.tokenizer)
cfg = TrainConfig(seq_len=p.original_length, seed=p.seed, **p.train)
model = tiny_llama(vocab_size=tokenizer.vocab_size, original_length=p.original_length, seed=p.seed, **p.model)
print(f"tiny Llama: {sum(t.numel() for t in model.parameters()):,} parameters; {cfg}")
train(model, load_tokens(snakemake.input.tokens), tokenizer, cfg, p.work_dir, snakemake.output.loss)
model.save_pretrained(snakemake.output.model)
tokenizer.save(snakemake.output.model)
shutil.rmtree(p.work_dir, ignore_errors=True)  # absent when no checkpoint was due
