"""The paper-style plots (PNG and SVG): perplexity against length, the passkey heat-map, λ per frequency pair."""
import pandas as pd

from longrope.evaluation.plots import plot_factors, plot_passkey, plot_perplexity
from longrope.factors import FoundFactors
from longrope.logs import to_rule_log
from longrope.rope import RopeScaling, critical_dimension, equivalent_factors, rope_geometry

to_rule_log(snakemake.log[0])

p, out = snakemake.params, snakemake.output[0]
if snakemake.rule == "plot_perplexity":
    plot_perplexity(pd.read_csv(snakemake.input.tidy), pd.read_csv(snakemake.input.comparison), p.original_length, out, **p.style)
elif snakemake.rule == "plot_passkey":
    plot_passkey(pd.read_csv(snakemake.input[0]), p.original_length, out, **p.style)
else:  # plot_factors: the searched set of each stage (the short set for a recovery), PI/NTK/YaRN at its scale
    from transformers import AutoConfig

    head_dim, base = rope_geometry(AutoConfig.from_pretrained(snakemake.input.model))
    runs, references = {}, {}
    for path in snakemake.input.factors:
        found = FoundFactors.load(path)
        name = f"{found.stage} (s = {found.scale:g})"
        runs[name] = list(found.searched)
        references[name] = {m: equivalent_factors(RopeScaling(m, found.original_length, found.target_length),
                                                  head_dim, base).tolist() for m in ("pi", "ntk", "yarn")}
    plot_factors(runs, references, out, critical_dimension(head_dim, base, found.original_length), **p.style)
