"""Fetch a hub dataset's files at a pinned revision into the hub cache, recording the commit in a manifest."""
import sys

from longrope.sources.hub import fetch

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

source = snakemake.params.source
record = fetch(source.repo, "dataset", source.revision, list(source.patterns), f"{source.key}.hub",
               snakemake.output[0])
print(f"{source.repo} at {source.revision} = commit {record['commit']}: {len(record['files'])} file(s)")
