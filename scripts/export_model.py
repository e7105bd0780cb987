"""Save the extended model (weights of the searched model, the export stage's RoPE scaling under export.switch and
export.n_hat) as a checkpoint, with its tokenizer, and check that stock transformers computes this package's forward
on it at the check lengths: under export.n_hat: zero the job fails unless the two are identical at every length."""
import pandas as pd
import torch

from longrope.export.hf import check_n_hat, compare_with_stock, export_checkpoint
from longrope.factors import load_factors
from longrope.logs import to_rule_log
from longrope.model import compute_dtype

to_rule_log(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

p = snakemake.params
scaling = load_factors(snakemake.input.scaling)
check_n_hat(scaling, p.n_hat)  # before any work
scaling = export_checkpoint(snakemake.input.model, scaling, p.switch, snakemake.input.tokenizer,
                            snakemake.output.model, p.attention, p.n_hat)
print(f"exported {snakemake.input.model} with {snakemake.input.scaling} (switch: {p.switch}, n̂ policy: {p.n_hat}): "
      f"long factors up to {max(scaling.factors):g}, short set "
      f"{'searched' if scaling.short_factors else 'equal to the long set'}, switch length {scaling.switch_length}, "
      f"n̂ = {scaling.n_hat}")
check = pd.DataFrame(compare_with_stock(snakemake.output.model, p.check_lengths, compute_dtype(p.dtype)),
                     columns=["length", "dtype", "max_abs_diff_hidden", "max_abs_diff_logits", "identical"])
print(check.to_string(index=False))
if p.n_hat == "zero" and not check["identical"].all():
    raise SystemExit(f"stock transformers does not compute this package's forward on the export at lengths "
                     f"{check.loc[~check['identical'], 'length'].tolist()}: one model must give one forward")
check.to_csv(snakemake.output.check, index=False)
