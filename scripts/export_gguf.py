"""Write the exported model as one GGUF file for llama.cpp (export.gguf): weights in the configured type, the
tokenizer, and the LongRoPE factor sets, attention factor, switch length and extended context as llama.cpp reads
them."""
import sys

from longrope.export.gguf import write_gguf

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

summary = write_gguf(snakemake.input.model, snakemake.output.gguf, dtype=snakemake.params.dtype)
print(f"{snakemake.input.model} → {snakemake.output.gguf}")
for key, value in summary.items():
    print(f"{key}: {value}")
