"""Every perplexity measured in one tidy CSV, the paper-style tables derived from it, and the plot."""
import sys

import pandas as pd

from longrope.report import (ablation, extended_models, markdown, n_hat_effect, perplexity_by_length, plot_perplexity,
                             search_vs_baselines, short_recovery)

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

p = snakemake.params
tidy = pd.concat([pd.read_csv(f) for f in snakemake.input], ignore_index=True)
tidy.to_csv(snakemake.output.csv, index=False)
tables = {
    "md": ("Perplexity by length (paper Table 1 layout)", perplexity_by_length(tidy, p.original_length)),
    "search": ("Searched factors vs the best baseline at the same scale", search_vs_baselines(tidy, p.search_scales)),
    "ablation": ("Ablation (paper Table 11): PI, λ only, λ + n̂", ablation(tidy, p.search_scales)),
    "n_hat": ("n̂ effect (paper Table 2): perplexity at each search target by n̂", n_hat_effect(tidy)),
    "extended": ("Extended models by length (paper Tables 5-7 layout)",
                 extended_models(tidy, p.original_length, max(p.search_scales))),
    "recovery": ("Short-context recovery (paper Table 10)", short_recovery(tidy, p.original_length)),
}
for key, (title, frame) in tables.items():
    with open(snakemake.output[key], "w") as f:
        f.write(f"## {title}\n\n" + (markdown(frame) if len(frame) else "(nothing measured)\n"))
plot_perplexity(tidy, p.original_length, snakemake.output.plot)
