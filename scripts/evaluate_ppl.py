"""Perplexity by length of one model under a list of RoPE scalings (baselines, a search's factors, n̂ variants).
Each scaling is evaluated at the lengths up to `beyond_target` × its target; plain RoPE at every length. Given no
scaling, a fine-tuned model is evaluated with the one saved with it.
Windows come from the held-out evaluation text, never the search-fitness half, as the paper's truncation protocol:
the window at each length is a prefix of the same spans (data.windows.nested_windows, laid out by the seed and the
configured lengths only), so every model and scaling is scored on the same windows at a given length, each span
is run once at the longest length it serves, and each window's NLL is kept for pairing.
With evaluation.mode sliding, or evaluation.documents (whole documents of the evaluation store, their ids
recorded), each length is scored on its own."""
import time

import torch

from longrope.data.tokens import TokenStore
from longrope.data.windows import (document_windows, evaluation_documents, nested_windows, sample_windows,
                                   samples_for_length, window_starts)
from longrope.evaluation.perplexity import evaluation_lengths, perplexity, sliding_perplexity, truncated_perplexities
from longrope.evaluation.records import PerplexityRecords
from longrope.evaluation.subjects import subject_scalings
from longrope.logs import to_rule_log
from longrope.model import compute_dtype, dtype_name, load_model
from longrope.parallelism.sequence import spread
from longrope.patching import apply_rope_scaling

to_rule_log(snakemake.log[0])
p = snakemake.params
torch.set_num_threads(max(1, snakemake.threads // p.sequence))
scalings = subject_scalings(p.scalings, getattr(snakemake.input, "factors", None), getattr(p, "label", None),
                            snakemake.input.model)
store = TokenStore.open(snakemake.input.tokens)
tokens = store.tokens
nested = None
if p.mode == "truncate" and p.documents is None:  # refused here, before the model loads, when the text is too short
    counts = {n: samples_for_length(n, p.max_samples, p.tokens_per_length, p.min_samples, len(tokens))
              for n in sorted({*p.window_lengths, *p.lengths})}
    try:
        nested = nested_windows(len(tokens), counts, seed=p.seed)
    except ValueError as error:
        raise ValueError(f"{snakemake.input.tokens}: {error}") from None
dtype = compute_dtype(p.dtype)
model = load_model(snakemake.input.model, attention=p.attention, dtype=dtype, scaling=scalings[0][1])
store.check_vocabulary(model.config.vocab_size)
print(f"compute dtype {dtype_name(dtype)} (compute.dtype: {p.dtype})")
if p.sequence > 1:  # every window split over this process and sequence - 1 followers
    spread(model, snakemake.input.model, p.sequence, max(1, snakemake.threads // p.sequence))
records = PerplexityRecords()
for i, (label, scaling) in enumerate(scalings):
    if i:
        apply_rope_scaling(model, scaling)
    lengths = evaluation_lengths(scaling, p.lengths, p.beyond_target)
    keys = {n: {"study": p.study, "model": p.model, "method": label, "scale": scaling.scale, "n_hat": scaling.n_hat,
                "length": n} for n in lengths}
    if nested is not None:
        results, seconds = truncated_perplexities(model, tokens, nested, lengths, scaling, progress=label)
        for n in lengths:
            print(records.add(keys[n], results[n], nested.starts_at(n), seconds[n]))
        continue
    for length in lengths:
        t0 = time.time()
        # sliding: documents of `span` scored by windows of `length`; documents: each document's first `span`
        span = (p.document_length or 2 * length) if p.mode == "sliding" else length
        documents = None
        if p.documents is not None:
            try:
                documents = evaluation_documents(store, span, p.seed, **p.documents)
            except ValueError as error:
                raise ValueError(f"evaluation.documents ({snakemake.input.tokens}, length {length}): {error}") from None
            starts = store.documents[documents]
            samples = document_windows(store, documents, span)
        else:
            n = samples_for_length(span, p.max_samples, p.tokens_per_length, p.min_samples, len(tokens))
            starts = window_starts(len(tokens), span, n, seed=[p.seed, span])  # the windows sample_windows slices
            samples = sample_windows(tokens, span, n, seed=[p.seed, span])
        result = (sliding_perplexity(model, samples, length, p.stride, progress=f"{label} {length}")
                  if p.mode == "sliding" else perplexity(model, samples, progress=f"{label} {length}"))
        print(records.add(keys[length], result, starts, time.time() - t0, documents))
records.save(snakemake.output.perplexity, snakemake.output.windows)
