"""A token store: one role's share of its source (longrope.data.sources), encoded in batches on the job's threads."""
import os

from longrope.data.sources import documents_of
from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import CHARS_PER_THREAD, StoreWriter, encode_in_batches
from longrope.logs import to_rule_log
from longrope.sources.hub import source_files

to_rule_log(snakemake.log[0])
# The batch encoder runs on the job's threads, not on every core of the machine; it reads this at its first batch.
os.environ["RAYON_NUM_THREADS"] = str(snakemake.threads)

selection = snakemake.params.selection
files = source_files(selection.source, snakemake.input)
tokenizer = load_tokenizer(snakemake.input.tokenizer)
with StoreWriter(snakemake.output[0], tokenizer, selection.describe()) as store:
    for ids in encode_in_batches(tokenizer, documents_of(selection, files), snakemake.threads * CHARS_PER_THREAD):
        store.append(selection.cut(ids))
print(f"{selection.role} from {selection.source.key} ({len(files)} file(s)): {store.tokens:,} tokens in "
      f"{store.documents:,} document(s), {store.dtype}")
