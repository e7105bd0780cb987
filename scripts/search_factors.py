"""Evolution search of LongRoPE factors (λ per frequency pair, n̂) for one stage on one model."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm
from transformers import AutoConfig

from longrope.data import load_tokenizer, load_tokens, needle_windows, sample_windows
from longrope.fitness import FitnessPool, FitnessSpec
from longrope.model import compute_dtype, rope_geometry
from longrope.report import plot_convergence
from longrope.rope import RopeScaling, critical_dimension, equivalent_factors, load_factors
from longrope.search import config_from_settings, search

sys.stderr = sys.stdout = open(snakemake.log[0], "a", buffering=1)

p = snakemake.params
L0, target = p.original_length, round(p.scale * p.original_length)
# Secondary search (paper §3.3): search λ₂ for the remaining ratio on top of an earlier stage's λ_ft and keep
# λ_ft ⊙ λ₂. Recovery (paper §3.3, Table 10): search the short factor set, used up to this stage's length, for an
# earlier stage's long factors (same attention factor, as Phi-3), at L0 and at this stage's length (one length when
# they coincide: a short set for sequences within L0, as for a 2x extension).
# A plain search starts from plain RoPE.
mode = p.search["mode"]
earlier = load_factors(snakemake.input.base_factors) if mode != "plain" else None
carried = np.asarray(earlier.factors) if mode == "secondary" else 1.0
ratio = p.scale / earlier.scale if mode == "secondary" else p.scale
cfg = config_from_settings(p.search, ratio)
head_dim, base = rope_geometry(AutoConfig.from_pretrained(snakemake.input.model, local_files_only=True))
fitness_lengths = sorted({L0, target}) if mode == "recovery" else [target]
tokens, tokenizer = load_tokens(snakemake.input.tokens), load_tokenizer(snakemake.input.tokenizer)


def fitness_windows(length: int):
    """(windows, scored tokens or None for all) at one fitness length, from the fitness half only. needle_ppl
    (LongRoPE2) scores the recalled digits of needles planted ≥ L0 earlier; a window too short to hold the needles
    and their recall (a recovery search at L0) is scored on all its tokens."""
    seed = [p.search["seed"], length]
    if p.search["fitness"] == "needle_ppl":
        try:
            needles = needle_windows(tokens, tokenizer, length, p.search["samples"], seed, L0, p.search["needles"])
            return needles.ids, needles.scored
        except ValueError as error:
            print(f"{length} tokens: plain perplexity ({error})")
    return sample_windows(tokens, length, p.search["samples"], seed=seed), None


windows, scored = zip(*map(fitness_windows, fitness_lengths))


def scaling(c) -> RopeScaling:
    if mode == "recovery":
        return RopeScaling("longrope", L0, earlier.target_length, factors=earlier.factors, n_hat=earlier.n_hat,
                           short_factors=c.factors, short_length=target)
    return RopeScaling("longrope", L0, target, factors=tuple(carried * np.asarray(c.factors)), n_hat=c.n_hat)


seeds = [equivalent_factors(RopeScaling(m, L0, round(ratio * L0)), head_dim, base).tolist() for m in ("pi", "ntk", "yarn")]
# Perplexity at the fitness length (the geometric mean over both lengths for a recovery search), on
# search.workers model replicas of `sequence` processes each; the first PI scaling verifies that the patch reaches each replica's forward.
spec = FitnessSpec(snakemake.input.model, p.attention, RopeScaling("pi", L0, target), windows,
                   compute_dtype(p.dtype), scored)
bar = tqdm(total=cfg.generations + 1, desc=f"search_{p.stage}", file=sys.stderr)


def progress(record):
    bar.update(1)
    bar.set_postfix(evals=record["evaluations"], best=f"{record['best']:.3f}", refresh=False)
    print(json.dumps(record))


Path(p.work_dir).mkdir(parents=True, exist_ok=True)
with FitnessPool(spec, p.search["workers"], snakemake.threads, p.sequence, p.search["batch"]) as pool:
    result = search(lambda candidates, windows: pool([scaling(c) for c in candidates], windows), seeds, cfg,
                    Path(p.work_dir) / "search_log.jsonl", progress)
bar.close()

best = scaling(result.best)
np.savetxt(snakemake.output.factors, np.asarray(result.best.factors if mode == "recovery" else best.factors))
Path(snakemake.output.json).write_text(json.dumps({
    "stage": p.stage, "scaling": best.to_dict(), "attention_factor": best.attention_scale,
    "original_length": L0, "target_length": target, "scale": p.scale, "fitness_ppl": result.best_fitness,
    "fitness_samples": p.search["samples"], "evaluations": result.evaluations, "cache_hits": result.cache_hits,
    "search": {**p.search, "ceiling_value": cfg.ceiling}, "model": str(snakemake.input.model),
    "critical_dimension": critical_dimension(head_dim, base, L0),
}, indent=2))
shutil.copy(Path(p.work_dir) / "search_log.jsonl", snakemake.output.log)
plot_convergence(result.history, snakemake.output.plot, title=f"search_{p.stage} (s = {p.scale:g})")
shutil.rmtree(p.work_dir)
