"""Passkey retrieval over lengths × needle depths and RULER-style needle tasks for one model under one scaling.
Lengths stop at `beyond_target` × the scaling's target, as the perplexity evaluation."""
import sys

import pandas as pd
import torch

from longrope.data import load_tokenizer
from longrope.evaluate import evaluation_lengths
from longrope.model import apply_rope_scaling, compute_dtype, load_model, saved_scaling
from longrope.retrieval import needle_score, passkey_accuracy
from longrope.rope import RopeScaling, load_factors

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
if "factors" in snakemake.input.keys():
    scaling = load_factors(snakemake.input.factors)
elif p.scaling is not None:
    scaling = RopeScaling.from_dict(p.scaling)
else:  # a fine-tuned model: the scaling saved with it, the one it was trained with (mixed window included)
    scaling = saved_scaling(snakemake.input.model)
model = apply_rope_scaling(load_model(snakemake.input.model, attention=p.attention, dtype=compute_dtype(p.dtype)), scaling)
tokenizer = load_tokenizer(snakemake.input.tokenizer)
subject = {"model": p.model, "method": p.label, "scale": scaling.scale}

passkey = [{**subject, **row} for n in evaluation_lengths(scaling, p.passkey["lengths"], p.beyond_target)
           for row in passkey_accuracy(model, tokenizer, n, p.passkey["depths"], p.passkey["trials"],
                                       p.passkey["seed"], with_task=p.passkey["task_line"])]
for row in passkey:
    print(row)
needles = [{**subject, **needle_score(model, tokenizer, task, n, p.needles["trials"], p.needles["seed"])}
           for task in p.needles["tasks"] for n in evaluation_lengths(scaling, p.needles["lengths"], p.beyond_target)]
for row in needles:
    print(row)
passkey_columns = [*subject, "length", "depth", "trials", "accuracy", "accuracy_lo", "accuracy_hi"]
pd.DataFrame(passkey, columns=passkey_columns).to_csv(snakemake.output.passkey, index=False)
needle_columns = [*subject, "task", "length", "trials", "score", "score_lo", "score_hi"]
pd.DataFrame(needles, columns=needle_columns).to_csv(snakemake.output.needles, index=False)
