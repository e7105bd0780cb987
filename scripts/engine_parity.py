"""The exported model on the same held-out windows through stock transformers, this package's loader and llama.cpp
(when the export has a GGUF): one row per engine and length (longrope.export.parity), as CSV and Markdown. The job
fails when it compared nothing or an engine is off by more than export.parity.tolerance."""
import torch

from longrope.data.tokens import TokenStore
from longrope.evaluation.report import markdown
from longrope.export.parity import check_parity, engine_parity, parity_table, parity_windows
from longrope.logs import to_rule_log

to_rule_log(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

p = snakemake.params
tokens = TokenStore.open(snakemake.input.tokens).tokens
windows = parity_windows(tokens, p.lengths, p.windows, p.seed)
rows = engine_parity(snakemake.input.model, snakemake.input.gguf[0] if snakemake.input.gguf else None, windows,
                     kv_caches=tuple(p.kv_cache), threads=snakemake.threads)
table = parity_table(rows)
print(table.to_string())
check_parity(rows, p.tolerance)
table.to_csv(snakemake.output.table)
with open(snakemake.output.markdown, "w") as out:
    out.write(markdown(table, digits=4))
