"""One lm-evaluation-harness suite on one subject: the model loaded with the subject's scaling (applied once and
verified), handed to lm-eval as an object with the subject's extended length."""
import json

import torch

from longrope.evaluation.subjects import subject_scaling
from longrope.harness.run import harness_model, run_suite
from longrope.harness.suites import Suite
from longrope.logs import to_rule_log
from longrope.model import compute_dtype, dtype_name, load_model

to_rule_log(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

p, out = snakemake.params, snakemake.output
suite = Suite.from_config(snakemake.wildcards.suite, p.suite)
scaling = subject_scaling(p.scaling, getattr(snakemake.input, "factors", None), p.label, snakemake.input.model)
dtype = compute_dtype(p.dtype)
model = load_model(snakemake.input.model, attention=p.attention, dtype=dtype, scaling=scaling)
# lm-eval cuts contexts to max_length: the subject's extended length, or the suite's longest where that is longer.
max_length = max([scaling.target_length, *suite.lengths])
print(f"{snakemake.wildcards.subject}: {p.label} s={scaling.scale:g}, max_length {max_length}, "
      f"compute dtype {dtype_name(dtype)}")
lm = harness_model(model, snakemake.input.tokenizer, max_length, p.batch_size)
raw, scores, samples = run_suite(lm, suite, snakemake.input.tokenizer, p.seed)

subject = {"subject": snakemake.wildcards.subject, "model": p.model, "method": p.label, "scale": scaling.scale}
with open(out.results, "w") as f:
    json.dump({"subject": subject, "max_length": max_length, "dtype": dtype_name(dtype), **raw}, f, indent=1,
              default=str)
scores.assign(**subject)[[*subject, *scores.columns]].to_csv(out.scores, index=False)
samples.assign(**subject)[[*subject, *samples.columns]].to_csv(out.samples, index=False)
print(scores.to_string())
