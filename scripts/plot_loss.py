"""Training-loss curve from a loss log CSV."""
import pandas as pd

from longrope.evaluation.plots import plot_loss
from longrope.logs import to_rule_log

to_rule_log(snakemake.log[0])
plot_loss(pd.read_csv(snakemake.input[0]), snakemake.output[0])
