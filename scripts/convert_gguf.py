"""Convert the base model's GGUF file into a Hugging Face folder that stock transformers opens."""
from longrope.logs import to_rule_log
from longrope.sources.gguf import convert_gguf

to_rule_log(snakemake.log[0])

convert_gguf(snakemake.input[0], snakemake.output[0])
print(f"{snakemake.input[0]} → {snakemake.output[0]}")
