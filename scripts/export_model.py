"""Save the extended model (weights of the searched model, the export stage's RoPE scaling under export.switch) for
stock transformers and vLLM, with its tokenizer, and check that stock transformers reproduces this package's forward
at the check lengths."""
import sys

import pandas as pd
import torch

from longrope.export.hf import compare_with_stock, export_checkpoint
from longrope.factors import load_factors
from longrope.model import compute_dtype

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
scaling = export_checkpoint(snakemake.input.model, load_factors(snakemake.input.scaling), p.switch,
                            snakemake.input.tokenizer, snakemake.output.model, p.attention)
print(f"exported {snakemake.input.model} with {snakemake.input.scaling} (switch: {p.switch}): long factors up to "
      f"{max(scaling.factors):g}, short set {'searched' if scaling.short_factors else 'equal to the long set'}, "
      f"switch length {scaling.switch_length}, n̂ = {scaling.n_hat}"
      + ("" if scaling.n_hat == 0 else " (transformers has no n̂: load it with longrope.model.load_model)"))
check = pd.DataFrame(compare_with_stock(snakemake.output.model, p.check_lengths, compute_dtype(p.dtype)),
                     columns=["length", "dtype", "max_abs_diff_hidden", "max_abs_diff_logits", "identical"])
print(check.to_string(index=False))
check.to_csv(snakemake.output.check, index=False)
