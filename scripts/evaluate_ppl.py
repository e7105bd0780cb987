"""Perplexity by length of one model under a list of RoPE scalings (baselines, a search's factors, n̂ variants).
Each scaling is evaluated at the lengths up to `beyond_target` × its target; plain RoPE at every length.
Samples come from the held-out evaluation text, drawn by seed (never the search-fitness half)."""
import sys
import time

import pandas as pd
import torch

from longrope.data import load_tokens, sample_windows, samples_for_length
from longrope.evaluate import evaluation_lengths, perplexity, sliding_perplexity
from longrope.model import apply_rope_scaling, load_model
from longrope.rope import RopeScaling, load_factors
from longrope.sequence_parallel import spread

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
p = snakemake.params
torch.set_num_threads(max(1, snakemake.threads // p.sequence))
scalings = [(label, RopeScaling.from_dict(spec)) for label, spec in p.scalings]
if "factors" in snakemake.input.keys():
    scalings.append((p.label, load_factors(snakemake.input.factors)))
tokens = load_tokens(snakemake.input.tokens)
model = load_model(snakemake.input.model, attention=p.attention)
if p.sequence > 1:  # every window split over this process and sequence - 1 followers
    spread(model, snakemake.input.model, p.sequence, max(1, snakemake.threads // p.sequence))
rows = []
for label, scaling in scalings:
    apply_rope_scaling(model, scaling)
    for length in evaluation_lengths(scaling, p.lengths, p.beyond_target):
        t0 = time.time()
        if p.mode == "sliding":  # windows of `length` every `stride` tokens over whole documents
            span = p.document_length or 2 * length
            n = samples_for_length(span, p.max_samples, p.tokens_per_length)
            result = sliding_perplexity(model, sample_windows(tokens, span, n, seed=[p.seed, span]), length, p.stride)
        else:  # truncate: one window of `length` per sample
            n = samples_for_length(length, p.max_samples, p.tokens_per_length)
            result = perplexity(model, sample_windows(tokens, length, n, seed=[p.seed, length]))
        rows.append({"study": p.study, "model": p.model, "method": label, "scale": scaling.scale, "n_hat": scaling.n_hat,
                     "length": length, "ppl": result.ppl, "n_samples": result.n_samples, "tokens": result.tokens,
                     "seconds": round(time.time() - t0, 3)})
        print(rows[-1])
pd.DataFrame(rows).to_csv(snakemake.output[0], index=False)
