"""Perplexity by length of one model under a list of RoPE scalings (baselines, a search's factors, n̂ variants).
Each scaling is evaluated at the lengths up to `beyond_target` × its target; plain RoPE at every length. Given no
scaling, a fine-tuned model is evaluated with the one saved with it.
Samples come from the held-out evaluation text, drawn by seed and length only (never the search-fitness half), so
every model and scaling is scored on the same windows at a given length; each window's NLL is kept for pairing."""
import sys
import time

import pandas as pd
import torch

from longrope.data import load_tokens, sample_windows, samples_for_length, window_starts
from longrope.evaluate import evaluation_lengths, perplexity, sliding_perplexity
from longrope.model import apply_rope_scaling, compute_dtype, load_model, saved_scaling
from longrope.rope import RopeScaling, load_factors
from longrope.sequence_parallel import spread

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
p = snakemake.params
torch.set_num_threads(max(1, snakemake.threads // p.sequence))
scalings = [(label, RopeScaling.from_dict(spec)) for label, spec in p.scalings]
if "factors" in snakemake.input.keys():
    scalings.append((p.label, load_factors(snakemake.input.factors)))
if not scalings:  # a fine-tuned model: the scaling saved with it, the one it was trained with (mixed window included)
    scalings.append((p.label, saved_scaling(snakemake.input.model)))
tokens = load_tokens(snakemake.input.tokens)
model = load_model(snakemake.input.model, attention=p.attention, dtype=compute_dtype(p.dtype))
if p.sequence > 1:  # every window split over this process and sequence - 1 followers
    spread(model, snakemake.input.model, p.sequence, max(1, snakemake.threads // p.sequence))
rows, windows = [], []
for label, scaling in scalings:
    apply_rope_scaling(model, scaling)
    for length in evaluation_lengths(scaling, p.lengths, p.beyond_target):
        t0 = time.time()
        # truncate: one window of `length` per sample; sliding: documents of `span` scored by windows of `length`
        span = (p.document_length or 2 * length) if p.mode == "sliding" else length
        n = samples_for_length(span, p.max_samples, p.tokens_per_length, p.min_samples, len(tokens))
        starts = window_starts(len(tokens), span, n, seed=[p.seed, span])  # the windows sample_windows slices
        samples = sample_windows(tokens, span, n, seed=[p.seed, span])
        result = (sliding_perplexity(model, samples, length, p.stride) if p.mode == "sliding"
                  else perplexity(model, samples))
        key = {"study": p.study, "model": p.model, "method": label, "scale": scaling.scale, "n_hat": scaling.n_hat,
               "length": length}
        rows.append({**key, **result.summary(), "n_samples": result.n_samples, "tokens": result.tokens,
                     "seconds": round(time.time() - t0, 3)})
        windows += [{**key, "start": int(s), "nll": nll} for s, nll in zip(starts, result.unit_nll)]
        print(rows[-1])
pd.DataFrame(rows).to_csv(snakemake.output.perplexity, index=False)
pd.DataFrame(windows).to_csv(snakemake.output.windows, index=False)
