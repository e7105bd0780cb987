"""Passkey retrieval over lengths × needle depths and RULER-style needle tasks for one model under one scaling.
Lengths stop at `beyond_target` × the scaling's target, as the perplexity evaluation."""
import pandas as pd
import torch

from longrope.data.tokenizer import load_tokenizer
from longrope.evaluation.perplexity import evaluation_lengths
from longrope.evaluation.retrieval import needle_score, passkey_accuracy
from longrope.evaluation.subjects import subject_scaling
from longrope.logs import to_rule_log
from longrope.model import compute_dtype, load_model

to_rule_log(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

p = snakemake.params
scaling = subject_scaling(p.scaling, getattr(snakemake.input, "factors", None), p.label, snakemake.input.model)
model = load_model(snakemake.input.model, attention=p.attention, dtype=compute_dtype(p.dtype), scaling=scaling)
tokenizer = load_tokenizer(snakemake.input.tokenizer)
subject = {"model": p.model, "method": p.label, "scale": scaling.scale}

passkey = [{**subject, **row} for n in evaluation_lengths(scaling, p.passkey["lengths"], p.beyond_target)
           for row in passkey_accuracy(model, tokenizer, n, p.passkey["depths"], p.passkey["trials"],
                                       p.passkey["seed"], with_task=p.passkey["task_line"], progress=f"passkey {n}")]
for row in passkey:
    print(row)
needles = [{**subject, **needle_score(model, tokenizer, task, n, p.needles["trials"], p.needles["seed"],
                                      progress=f"{task} {n}")}
           for task in p.needles["tasks"] for n in evaluation_lengths(scaling, p.needles["lengths"], p.beyond_target)]
for row in needles:
    print(row)
passkey_columns = [*subject, "length", "depth", "trials", "accuracy", "accuracy_lo", "accuracy_hi"]
pd.DataFrame(passkey, columns=passkey_columns).to_csv(snakemake.output.passkey, index=False)
needle_columns = [*subject, "task", "length", "trials", "score", "score_lo", "score_hi"]
pd.DataFrame(needles, columns=needle_columns).to_csv(snakemake.output.needles, index=False)
