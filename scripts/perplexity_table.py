"""Tidy perplexity CSV of every evaluation, a Markdown table (method × length) and the perplexity plot."""
import sys

import pandas as pd

from longrope.report import plot_perplexity, to_markdown_table

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

tidy = pd.concat([pd.read_csv(f) for f in snakemake.input], ignore_index=True)
tidy.to_csv(snakemake.output.csv, index=False)
with open(snakemake.output.md, "w") as f:
    f.write(to_markdown_table(tidy, snakemake.params.original_length))
plot_perplexity(tidy, snakemake.params.original_length, snakemake.output.plot)
