"""Convert the base model's GGUF file into a Hugging Face folder that stock transformers opens."""
import sys

from longrope.sources.gguf import convert_gguf

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

convert_gguf(snakemake.input[0], snakemake.output[0])
print(f"{snakemake.input[0]} → {snakemake.output[0]}")
