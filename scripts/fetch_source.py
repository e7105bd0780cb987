"""Fetch a hub dataset's files at a pinned revision into the hub cache, recording the commit in a manifest."""
from longrope.logs import to_rule_log
from longrope.sources.hub import fetch

to_rule_log(snakemake.log[0])

source = snakemake.params.source
record = fetch(source.repo, "dataset", source.revision, list(source.patterns), f"{source.key}.hub",
               snakemake.output[0])
print(f"{source.repo} at {source.revision} = commit {record['commit']}: {len(record['files'])} file(s)")
