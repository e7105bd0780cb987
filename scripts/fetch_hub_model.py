"""Fetch a hub model (safetensors weights, config, tokenizer) at a pinned revision, linked into the base folder."""
from longrope.logs import to_rule_log
from longrope.sources.hub import fetch_model

to_rule_log(snakemake.log[0])

p, out = snakemake.params, snakemake.output
record = fetch_model(p.repo, p.revision, "base_model.path", out.model, out.manifest)
print(f"{p.repo} at {p.revision} = commit {record['commit']}: {', '.join(record['files'])} → {out.model}")
