"""Training-loss curve from a loss log CSV."""
import sys

import pandas as pd

from longrope.evaluation.report import plot_loss

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
plot_loss(pd.read_csv(snakemake.input[0]), snakemake.output[0])
