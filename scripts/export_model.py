"""Save the extended model (weights of the searched model, the export stage's RoPE scaling) for stock transformers."""
import shutil
import sys
from pathlib import Path

from longrope.model import apply_rope_scaling, load_model, save_extended
from longrope.rope import load_factors

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

scaling = load_factors(snakemake.input.scaling)
model = load_model(snakemake.input.model, attention=snakemake.params.attention)
apply_rope_scaling(model, scaling)
save_extended(model, scaling, snakemake.output[0])
shutil.copy(snakemake.input.tokenizer, Path(snakemake.output[0]) / "tokenizer.json")
print(f"exported {snakemake.input.model} with {snakemake.input.scaling}: long factors up to {max(scaling.factors):g}, "
      f"short set {'searched' if scaling.short_factors else 'equal to the long set'}, n̂ = {scaling.n_hat}"
      + ("" if scaling.n_hat == 0 else " (transformers has no n̂: load with longrope.model.load_model for exact results)"))
