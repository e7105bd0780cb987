"""Write the exported model as one GGUF file for llama.cpp (export.gguf): weights in the configured type, the
tokenizer, and the LongRoPE factor sets, attention factor, switch length and extended context as llama.cpp reads
them."""
from longrope.export.gguf import write_gguf
from longrope.logs import to_rule_log

to_rule_log(snakemake.log[0])

summary = write_gguf(snakemake.input.model, snakemake.output.gguf, dtype=snakemake.params.dtype)
print(f"{snakemake.input.model} → {snakemake.output.gguf}")
for key, value in summary.items():
    print(f"{key}: {value}")
