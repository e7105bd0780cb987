"""Evolution search of LongRoPE factors (λ per frequency pair, n̂) for one stage on one model."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm
from transformers import AutoConfig

from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import TokenStore
from longrope.evaluation.plots import plot_convergence
from longrope.model import compute_dtype, dtype_name
from longrope.plan import SearchSettings
from longrope.rope import RopeScaling, critical_dimension, equivalent_factors, rope_geometry
from longrope.search.engine import search
from longrope.factors import FoundFactors, load_factors
from longrope.logs import to_rule_log
from longrope.search.fitness import FitnessPool, FitnessSpec
from longrope.search.windows import fitness_documents, fitness_lengths, fitness_windows

to_rule_log(snakemake.log[0], append=True)

p = snakemake.params
settings = SearchSettings.from_dict(p.search)
L0, target = p.original_length, round(p.scale * p.original_length)
# Secondary search (paper §3.3): search λ₂ for the remaining ratio on top of an earlier stage's λ_ft and keep
# λ_ft ⊙ λ₂. Recovery (paper §3.3, Table 10): search the short factor set, used up to this stage's length, for an
# earlier stage's long factors (same attention factor, as Phi-3), at L0 and at this stage's length.
# A plain search starts from plain RoPE.
mode = settings.mode
earlier = load_factors(snakemake.input.base_factors) if mode != "plain" else None
carried = np.asarray(earlier.factors) if mode == "secondary" else 1.0
ratio = p.scale / earlier.scale if mode == "secondary" else p.scale
cfg = settings.engine_config(ratio)
architecture = AutoConfig.from_pretrained(snakemake.input.model, local_files_only=True)
head_dim, base = rope_geometry(architecture)
store = TokenStore.open(snakemake.input.tokens).check_vocabulary(architecture.vocab_size)
tokenizer = load_tokenizer(snakemake.input.tokenizer)
lengths = fitness_lengths(mode, L0, target)
windows, scored = zip(*(fitness_windows(store, tokenizer, n, settings, L0) for n in lengths))
documents = (None if settings.documents is None  # search.documents: which documents each fitness length scored
             else {str(n): fitness_documents(store, n, settings).tolist() for n in lengths})


def scaling(c) -> RopeScaling:
    if mode == "recovery":
        return RopeScaling("longrope", L0, earlier.target_length, factors=earlier.factors, n_hat=earlier.n_hat,
                           short_factors=c.factors, short_length=target)
    return RopeScaling("longrope", L0, target, factors=tuple(carried * np.asarray(c.factors)), n_hat=c.n_hat)


seeds = [equivalent_factors(RopeScaling(m, L0, round(ratio * L0)), head_dim, base).tolist()
         for m in ("pi", "ntk", "yarn")]
# Perplexity at the fitness length (the geometric mean over both lengths for a recovery search), on
# search.workers model replicas of `sequence` processes each; the first PI scaling verifies that the patch reaches
# each replica's forward.
dtype = compute_dtype(p.dtype)
spec = FitnessSpec(snakemake.input.model, p.attention, RopeScaling("pi", L0, target), windows, dtype, scored)
bar = tqdm(total=cfg.generations + 1, desc=f"search_{p.stage}", file=sys.stderr)


def progress(record):
    bar.update(1)
    bar.set_postfix(evals=record["evaluations"], best=f"{record['best']:.3f}", refresh=False)
    print(json.dumps(record))


Path(p.work_dir).mkdir(parents=True, exist_ok=True)
with FitnessPool(spec, settings.workers, snakemake.threads, p.sequence, settings.batch) as pool:
    result = search(lambda candidates, windows: pool([scaling(c) for c in candidates], windows), seeds, cfg,
                    Path(p.work_dir) / "search_log.jsonl", progress)
bar.close()

FoundFactors(
    stage=p.stage, scaling=scaling(result.best), scale=p.scale, fitness_ppl=result.best_fitness,
    fitness_samples=settings.samples, evaluations=result.evaluations, cache_hits=result.cache_hits,
    window_evaluations=result.window_evaluations,
    search={**settings.to_dict(), "ceiling_value": cfg.ceiling}, model=str(snakemake.input.model),
    critical_dimension=critical_dimension(head_dim, base, L0), dtype=dtype_name(dtype), fitness_documents=documents,
    tokens=str(snakemake.input.tokens),
).save(snakemake.output.json, snakemake.output.factors)
shutil.copy(Path(p.work_dir) / "search_log.jsonl", snakemake.output.log)
plot_convergence(result.history, snakemake.output.plot, title=f"search_{p.stage} (s = {p.scale:g})")
shutil.rmtree(p.work_dir)
